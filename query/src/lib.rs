//! The query language (a Cypher subset with embedding procedures) and its executor; built in the query issue.
