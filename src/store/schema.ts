/**
 * The team store's schema, version 1 (#19; docs/formats.md "Team store"). A row holds what a file
 * of the home holds, byte for byte, so it is bound by the same MACs and hashes: the vault document
 * by the vault's MAC, each audit line by the chain and its HMAC. The columns beside a line (seq,
 * prev, mac) are copies for the database's own constraints and indexes, and are checked against
 * the line when read. Created in one transaction with the copy that fills it.
 */
export const SCHEMA_VERSION = 1;

export const SCHEMA_V1: readonly string[] = [
  `CREATE TABLE schema_version (
     version integer PRIMARY KEY,
     created_at timestamptz NOT NULL DEFAULT now())`,
  // vault.json as text: key slots, ciphertexts, the MACed body; one row.
  `CREATE TABLE vault (
     id smallint PRIMARY KEY CHECK (id = 1),
     document text NOT NULL)`,
  // One row per audit line. A unique seq and a unique prev: two appends can neither take the same
  // number nor chain onto the same entry (no fork), whichever process writes them.
  `CREATE TABLE audit_entries (
     seq bigint PRIMARY KEY CHECK (seq >= 1),
     segment text,
     prev text NOT NULL UNIQUE,
     mac text,
     line text NOT NULL)`,
  `CREATE TABLE audit_segment_index (
     id smallint PRIMARY KEY CHECK (id = 1),
     document text NOT NULL)`,
  // The Merkle tree's stored levels (audit/tree-v1/): derived from the lines, evidence for nobody.
  `CREATE TABLE audit_tree (
     name text PRIMARY KEY,
     data bytea NOT NULL)`,
  `CREATE TABLE brakes (
     name text PRIMARY KEY,
     record text NOT NULL)`,
  `CREATE TABLE brake_journal (
     n bigint PRIMARY KEY CHECK (n >= 1),
     line text NOT NULL)`,
  // Whether the home had a journal at all (an empty journal and none are different homes).
  `CREATE TABLE brake_journal_present (
     id smallint PRIMARY KEY CHECK (id = 1))`,
  // Every other state file (config.json, ship cursors, monitor state), as the home holds it.
  `CREATE TABLE home_files (
     path text PRIMARY KEY,
     content bytea NOT NULL)`,
  // Filled by serve on the team store (not yet: this slice copies homes only).
  `CREATE TABLE serve_registrations (
     instance text PRIMARY KEY,
     host text NOT NULL,
     pid integer NOT NULL,
     started_at timestamptz NOT NULL,
     seen_at timestamptz NOT NULL)`,
];
