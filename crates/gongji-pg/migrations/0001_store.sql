-- The journal and snapshots of `gongji serve --store postgres://…` (crates/gongji-pg/src/store.rs).
--
-- One row per journaled op. The op number is the primary key: a group-committed batch is one
-- INSERT (one transaction) of its ops, so a second writer that believes it is primary cannot
-- commit a conflicting history (its first op collides). chain_hash is the same blake3 chain as
-- the file journal's (blake3(prev || op || time || body) from 32 zero bytes), checked on
-- recovery: a gap, an edit or a mixed history is refused, never replayed.
CREATE TABLE gongji_journal (
    op         bigint PRIMARY KEY CHECK (op >= 1),
    time       bigint NOT NULL,
    body       bytea  NOT NULL,
    chain_hash bytea  NOT NULL CHECK (octet_length(chain_hash) = 32)
);

-- A snapshot: the encoded state after op `op` (chain hash `chain_hash` there), written in one
-- transaction by the shadow thread, its body in chunks of a few MiB. body_hash is blake3 of
-- the whole body, checked on load; a snapshot that does not verify is skipped.
CREATE TABLE gongji_snapshot (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    op          bigint      NOT NULL CHECK (op >= 0),
    chain_hash  bytea       NOT NULL CHECK (octet_length(chain_hash) = 32),
    body_bytes  bigint      NOT NULL CHECK (body_bytes >= 0),
    body_hash   bytea       NOT NULL CHECK (octet_length(body_hash) = 32),
    chunk_count integer     NOT NULL CHECK (chunk_count >= 0),
    written_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX gongji_snapshot_newest ON gongji_snapshot (op DESC, id DESC);

CREATE TABLE gongji_snapshot_chunk (
    snapshot_id bigint  NOT NULL REFERENCES gongji_snapshot (id) ON DELETE CASCADE,
    seq         integer NOT NULL CHECK (seq >= 0),
    data        bytea   NOT NULL,
    PRIMARY KEY (snapshot_id, seq)
);
-- Snapshot bytes are already dense: store them out of line without compressing.
ALTER TABLE gongji_snapshot_chunk ALTER COLUMN data SET STORAGE EXTERNAL;
