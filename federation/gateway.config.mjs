// Hive Gateway in front of Lighthouse's subgraphs: `hive-gateway supergraph supergraph.graphql`
// run in this directory reads this file. The caller's bearer token goes to every subgraph, which
// authenticates and authorizes it itself (its own policies and row-level security): the gateway
// is trusted with nothing.
import { defineConfig } from "@graphql-hive/gateway";

export const gatewayConfig = defineConfig({
  propagateHeaders: {
    fromClientToSubgraphs({ request }) {
      return {
        authorization: request.headers.get("authorization"),
        "x-request-id": request.headers.get("x-request-id"),
      };
    },
  },
  // The subgraphs keep their own limits; the router gives each call a deadline.
  upstreamTimeout: 30_000,
  disableIntrospection: false,
  logging: process.env.HIVE_LOGGING ?? "warn",
});
