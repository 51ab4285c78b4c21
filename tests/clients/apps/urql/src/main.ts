// The board through urql, its document typed and persisted by GraphQL Code Generator.
import { run } from "../../harness";
import { BoardDocument } from "./gql/graphql";
import { graphClient } from "./urql";

run(async ({ url, token }) => {
  const result = await graphClient(url, () => token).query(BoardDocument, { first: 5 }).toPromise();
  if (result.error) throw result.error;
  return result.data;
});
