// A live board: each incident change as it comes, through graphql-ws on the browser's WebSocket.
import { run } from "../../harness";
import { liveClient } from "./live";

run(
  ({ url, token }) =>
    new Promise((resolve, reject) => {
      const client = liveClient(url.replace(/^http/, "ws"), async () => token);
      client.on("connected", () => window.events.push({ connected: true }));
      client.subscribe(
        { query: "subscription { incidentChanged { kind incident { id title } } }" },
        {
          next: (result) => window.events.push(result),
          error: reject,
          complete: () => resolve("completed"),
        },
      );
    }),
);
