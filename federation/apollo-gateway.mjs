// A second federation router: @apollo/gateway inside @apollo/server, from a supergraph SDL.
//   node apollo-gateway.mjs SUPERGRAPH_FILE PORT
// Like the Hive Gateway configuration, it forwards the caller's bearer token to the subgraphs
// and enforces nothing itself.
import { readFileSync } from "node:fs";
import { ApolloServer } from "@apollo/server";
import { startStandaloneServer } from "@apollo/server/standalone";
import { ApolloGateway, RemoteGraphQLDataSource } from "@apollo/gateway";

const [file, port] = process.argv.slice(2);
if (!file || !port) {
  process.stderr.write("usage: node apollo-gateway.mjs SUPERGRAPH_FILE PORT\n");
  process.exit(2);
}

class ForwardingDataSource extends RemoteGraphQLDataSource {
  willSendRequest({ request, context }) {
    for (const name of ["authorization", "x-request-id"]) {
      if (context[name]) request.http.headers.set(name, context[name]);
    }
  }
}

const gateway = new ApolloGateway({
  supergraphSdl: readFileSync(file, "utf8"),
  buildService: ({ url }) => new ForwardingDataSource({ url }),
});
const server = new ApolloServer({ gateway, csrfPrevention: false, introspection: true });
const { url } = await startStandaloneServer(server, {
  listen: { host: "127.0.0.1", port: Number(port) },
  context: async ({ req }) => ({
    authorization: req.headers.authorization,
    "x-request-id": req.headers["x-request-id"],
  }),
});
process.stdout.write(`apollo gateway on ${url}\n`);
