// Init script for browser tests: holds chosen data-channel events back for a while, as a slow
// network would, so short-lived states (processing, interrupting) stay on screen long enough to
// be checked and photographed. window.eventDelays = {"output_audio_buffer.started": 2000, ...}.
(() => {
  window.eventDelays = {};
  const createDataChannel = RTCPeerConnection.prototype.createDataChannel;
  RTCPeerConnection.prototype.createDataChannel = function (...args) {
    const channel = createDataChannel.apply(this, args);
    const addEventListener = channel.addEventListener.bind(channel);
    channel.addEventListener = (type, listener, options) => {
      if (type !== "message") return addEventListener(type, listener, options);
      return addEventListener(type, (event) => {
        let kind = null;
        try { kind = JSON.parse(event.data).type; } catch { /* not JSON: deliver as is */ }
        const delay = window.eventDelays[kind];
        if (delay) setTimeout(() => listener(event), delay);
        else listener(event);
      }, options);
    };
    return channel;
  };
})();
