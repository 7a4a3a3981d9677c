// Init script for browser tests: a microphone the test speaks into when it chooses.
// getUserMedia({audio}) returns a Web Audio stream; window.testMic.say(url) plays a WAV into it
// and resolves, with performance.now(), when the recording ends. Everything after capture (the
// page, RealtimeClient, WebRTC's Opus encoder, RTP, ICE) is the browser's real path.
(() => {
  let context = null;
  let destination = null;
  const original = navigator.mediaDevices?.getUserMedia?.bind(navigator.mediaDevices);
  window.testMic = {
    calls: 0,
    async say(url) {
      if (!context) throw new Error("the page has not opened the microphone yet");
      const buffer = await context.decodeAudioData(await (await fetch(url)).arrayBuffer());
      const source = context.createBufferSource();
      source.buffer = buffer;
      source.connect(destination);
      return new Promise((resolve) => {
        source.onended = () => resolve(performance.now());
        source.start();
      });
    },
  };
  if (!original) return;
  navigator.mediaDevices.getUserMedia = async (constraints) => {
    if (!constraints?.audio) return original(constraints);
    context ||= new AudioContext({ sampleRate: 48000 });
    await context.resume();
    destination = context.createMediaStreamDestination(); // a fresh track per call (hang-up stops it)
    // Keep the graph rendering between utterances: an idle Web Audio track sends no RTP at all,
    // where a real microphone sends (near-)silence all the time.
    const floor = context.createConstantSource();
    floor.offset.value = 0;
    floor.connect(destination);
    floor.start();
    window.testMic.calls += 1;
    return destination.stream;
  };
})();
