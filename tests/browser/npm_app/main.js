// An app using the npm package as a bundler sees it: a bare import, no gateway-served module.
// The gateway's address comes from ?gateway=... (the test starts it on a free port).
import { ERROR_CODES, RealtimeClient } from "realtime-gateway-client";

const log = (line) => { document.querySelector("#log").textContent += `${line}\n`; };
const client = new RealtimeClient({ baseUrl: new URLSearchParams(location.search).get("gateway") });
client.addEventListener("statechange", ({ detail }) => log(`call: ${detail.state}`));
client.addEventListener("transcript", ({ detail }) => { if (detail.final) log(`${detail.role}: ${detail.text}`); });
client.addEventListener("conversationstate", ({ detail }) => log(`state: ${detail.state}`));
client.addEventListener("latency", ({ detail }) => log(`latency: ${detail.ms} ms`));
client.addEventListener("error", ({ detail }) => {
  log(`error: ${ERROR_CODES.includes(detail.code) ? detail.code : `unknown ${detail.code}`}`);
});
document.querySelector("#talk").onclick = () =>
  (client.state === "connected" ? client.disconnect() : client.connect());
window.client = client;
