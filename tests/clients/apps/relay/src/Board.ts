import { graphql } from "relay-runtime";

// Read by Relay's compiler, which writes the operation and its id to __generated__/.
export const BOARD = graphql`
  query BoardQuery($first: Int!) {
    incidents(first: $first) {
      totalCount
      edges { node { id caseNumber title status } }
    }
  }
`;
