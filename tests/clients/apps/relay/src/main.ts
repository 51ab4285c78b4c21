// The board through Relay, by the id its compiler gave the operation.
import { fetchQuery } from "relay-runtime";
import { run } from "../../harness";
import BoardQuery from "./__generated__/BoardQuery.graphql";
import { relayEnvironment } from "./relay";

run(({ url, token }) =>
  fetchQuery(relayEnvironment(url, () => token), BoardQuery, { first: 5 }).toPromise(),
);
