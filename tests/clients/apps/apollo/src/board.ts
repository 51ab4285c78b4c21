import { gql } from "@apollo/client";

export const BOARD = gql`
  query Board($first: Int!) {
    incidents(first: $first) {
      totalCount
      edges { node { id caseNumber title status } }
    }
  }
`;
