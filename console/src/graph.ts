// The graph, through registered documents only: every operation is sent as its documentId (the
// hash GraphQL Code Generator wrote into the manifest the gateway registered), over HTTP with
// urql and over the WebSocket with graphql-ws. No document text leaves the console.

import {
  Client,
  type CombinedError,
  fetchExchange,
  mapExchange,
  subscriptionExchange,
  type TypedDocumentNode,
} from "@urql/core";
import { createClient as createSocketClient, type Client as SocketClient } from "graphql-ws";

/** The document as urql sends it by id: no definitions, only its documentId. */
export function registered<Result, Variables>(
  document: TypedDocumentNode<Result, Variables>,
): TypedDocumentNode<Result, Variables> {
  const hash = (document as unknown as { __meta__?: { hash?: string } }).__meta__?.hash;
  if (!hash) throw new Error("a document without its registered hash: run the codegen");
  return { kind: "Document", definitions: [], documentId: hash } as unknown as TypedDocumentNode<
    Result,
    Variables
  >;
}

export interface Graph {
  client: Client;
  socket: SocketClient;
}

export function connect(
  url: string,
  token: () => string,
  onUnauthorized: () => void,
  onSocket: (state: "connected" | "closed") => void,
): Graph {
  const socketUrl = new URL(url, location.href);
  socketUrl.protocol = socketUrl.protocol === "https:" ? "wss:" : "ws:";
  const socket = createSocketClient({
    url: socketUrl.toString(),
    connectionParams: () => ({ Authorization: `Bearer ${token()}` }),
    // Open while the person is signed in (not only while a screen subscribes), so the header's
    // live state means what it says.
    lazy: false,
    retryAttempts: Infinity,
    shouldRetry: () => true,
    on: {
      connected: () => onSocket("connected"),
      closed: () => onSocket("closed"),
    },
  });
  const client = new Client({
    url,
    preferGetMethod: false,
    requestPolicy: "network-only",
    exchanges: [
      mapExchange({
        onError(error: CombinedError) {
          if (error.response?.status === 401) onUnauthorized();
        },
      }),
      fetchExchange,
      subscriptionExchange({
        forwardSubscription(request) {
          // request carries documentId (no query text) for a registered document.
          const payload = { ...request, query: request.query ?? "" };
          return {
            subscribe(sink) {
              const dispose = socket.subscribe(payload, sink);
              return { unsubscribe: dispose };
            },
          };
        },
      }),
    ],
    fetchOptions: () => ({ headers: { Authorization: `Bearer ${token()}` } }),
  });
  return { client, socket };
}
