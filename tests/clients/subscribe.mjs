// A subscription as a browser's client makes it: graphql-ws on the WHATWG WebSocket (Node's,
// started with --experimental-websocket on Node 20), which hands a binary frame over as a Blob
// that the protocol cannot read, as browsers do.
//
//   node --experimental-websocket subscribe.mjs URL TOKEN QUERY [EVENTS]
//
// Prints one JSON line per step: {"connected": true}, then each result ({"data": …}), and
// {"error": "…"} (exit 1) on anything the client reports as an error. Ends after EVENTS results.
import { createClient } from "graphql-ws";

const [url, token, query, wanted = "1"] = process.argv.slice(2);
const say = (value) => process.stdout.write(JSON.stringify(value) + "\n");

const client = createClient({
  url,
  webSocketImpl: WebSocket,
  connectionParams: { Authorization: `Bearer ${token}` },
  retryAttempts: 0,
  lazy: false,
  on: { connected: () => say({ connected: true }) },
  onNonLazyError: (error) => {
    say({ error: String(error?.reason ?? error?.message ?? error) });
    process.exit(1);
  },
});

let received = 0;
client.subscribe(
  { query },
  {
    next: (result) => {
      say(result);
      received += 1;
      if (received >= Number(wanted)) {
        client.dispose();
        process.exit(0);
      }
    },
    error: (error) => {
      say({ error: String(error?.reason ?? error?.message ?? JSON.stringify(error)) });
      process.exit(1);
    },
    complete: () => {
      say({ error: "completed before the events came" });
      process.exit(1);
    },
  },
);
