// The board through Apollo Client, its document's id from Apollo's persisted-query manifest.
import { run } from "../../harness";
import { graphClient } from "./apollo";
import { BOARD } from "./board";

run(async ({ url, token }) => {
  const result = await graphClient(url, () => token).query({ query: BOARD, variables: { first: 5 } });
  if (result.error) throw result.error;
  return result.data;
});
