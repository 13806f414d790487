-- The projection of a federated engine (docs/FEDERATION.md): its cross-engine transfers
-- (exchanges) and cross-engine bindings, as this engine holds them. An unfederated engine
-- leaves both empty. The money of an exchange is in the existing tables: the sender's debit
-- and return, and the receiver's credit, are entries (ref_kind 'exchange', ref_id =
-- exchange_no) and balances like any other. Each row is written from the engine's record and
-- keeps its last state once forgetting drops the record (the projection is history); a
-- projection rebuilt from a snapshot taken after forgetting has no rows of what was forgotten
-- before it.

-- One row per exchange this engine sent or received. `exchange_no` is what entries name;
-- `xid` the API's id (`<sender engine>-<32 hex>`), the same on both engines. `psn_id`: the
-- local sender (outgoing) or receiver (incoming), null when the receiver is unknown here or
-- the exchange was blocked before it arrived. `province`: the sender's. `resolved_at`: when
-- money moved on this engine at the close (the receiver's credit when accepted, the sender's
-- return when declined, expired or blocked), null while open and for a close that moves no
-- money of a person here (the sender's commit; the receiver's decline, expiry or block).
CREATE TABLE gongji.exchanges (
    exchange_no      bigint PRIMARY KEY,
    xid              text NOT NULL UNIQUE,
    outgoing         boolean NOT NULL,
    peer_engine      text NOT NULL,
    psn_id           integer,
    to_psn_no        text NOT NULL,
    to_admdvs        integer NOT NULL,
    province         smallint NOT NULL,
    amount_fen       bigint NOT NULL CHECK (amount_fen > 0),
    source           text NOT NULL CHECK (source IN ('acct', 'wallet')),
    status           text NOT NULL CHECK (status IN ('in_flight', 'pending', 'accepted',
                                                     'declined', 'expired', 'blocked')),
    reversed         boolean NOT NULL,
    created          bigint NOT NULL,
    expires_at       bigint NOT NULL,
    resolved_at      bigint,
    resolved_period  text
);
CREATE INDEX exchanges_psn ON gongji.exchanges (psn_id);
CREATE INDEX exchanges_resolved ON gongji.exchanges (resolved_period, province);

-- Cross-engine `wallet_only` bindings: a giver here and a receiver on `peer_engine`
-- (`giver_here`), or the reverse. `psn_id` is the local person (null for a record of a
-- revocation that arrived before its binding, or of a receiver unknown here); the remote
-- person is named by psn_no and area code only, as the engine holds them.
CREATE TABLE gongji.cross_engine_bindings (
    bxid             text PRIMARY KEY,
    giver_here       boolean NOT NULL,
    peer_engine      text NOT NULL,
    psn_id           integer,
    remote_psn_no    text NOT NULL,
    remote_admdvs    integer NOT NULL,
    relation         text NOT NULL,
    created          bigint NOT NULL,
    status           text NOT NULL CHECK (status IN ('pending', 'active', 'refused', 'revoked'))
);
CREATE INDEX cross_engine_bindings_psn ON gongji.cross_engine_bindings (psn_id);

-- The statistics count an accepted cross-engine transfer once, on the receiver's engine, in
-- the month it was accepted, under the sender's province, as cross_province (DOMAIN.md rule
-- 17; docs/FEDERATION.md): the same columns as before, with those rows added.
CREATE OR REPLACE VIEW gongji.stats_cells (period, province, channel, count, amount_fen) AS
    SELECT period, province, CASE WHEN cross_pool THEN 'cross_pool' ELSE 'same_pool' END,
           count(*)::bigint, sum(amount)::bigint
    FROM (SELECT period, province, cross_pool, acct_mulaid_pay AS amount
            FROM gongji.settlements WHERE NOT cancelled AND acct_mulaid_pay > 0
          UNION ALL
          SELECT period, province, cross_pool, amount_fen FROM gongji.contributions) d
    GROUP BY 1, 2, 3
    UNION ALL
    SELECT resolved_period, province,
           CASE WHEN cross_province THEN 'cross_province' ELSE 'in_province' END,
           count(*)::bigint, sum(amount_fen)::bigint
    FROM (SELECT resolved_period, province, cross_province, amount_fen
            FROM gongji.wallet_transfers WHERE status = 'accepted'
          UNION ALL
          SELECT resolved_period, province, true, amount_fen
            FROM gongji.exchanges WHERE NOT outgoing AND status = 'accepted') t
    GROUP BY 1, 2, 3;
