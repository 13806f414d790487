-- The SQL projection for analysts and reports (written by the projector, never by hand).
-- Everything lives in schema `gongji`, apart from the store's `public.gongji_*` tables.
-- Ids are the engine's: psn_id and inst_id are the engine's dense indexes + 1, the other ids
-- are the API's. Money is integer fen (bigint). Times are unix seconds (engine clock), with
-- the CST month as `period` ('YYYY-MM') where the statistics need it. Identity is masked
-- (DOMAIN.md rule 20): the raw certno and name never reach SQL.

CREATE SCHEMA IF NOT EXISTS gongji;

-- One row: how far the projection has applied the journal, and whose journal it is (the
-- chain hash after `op`): a projection is refused by an engine whose journal differs.
CREATE TABLE gongji.projection_cursor (
    id            boolean PRIMARY KEY DEFAULT true CHECK (id),
    op            bigint NOT NULL CHECK (op >= 0),
    chain_hash    bytea NOT NULL CHECK (length(chain_hash) = 32),
    engine_clock  bigint NOT NULL,
    updated_at    timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE gongji.persons (
    psn_id           integer PRIMARY KEY,
    psn_no           text NOT NULL UNIQUE,
    certno_masked    text NOT NULL,
    psn_name_masked  text NOT NULL,
    insutype         text NOT NULL CHECK (insutype IN ('310', '390')),
    admdvs           integer NOT NULL,
    province         smallint NOT NULL,
    pool             smallint NOT NULL,
    status           text NOT NULL CHECK (status IN ('active', 'suspended'))
);

-- Personal accounts: one per 310 person.
CREATE TABLE gongji.accounts (
    psn_id     integer PRIMARY KEY,
    balc_fen   bigint NOT NULL CHECK (balc_fen >= 0)
);

-- Medical-insurance wallets: one per person who opened one.
CREATE TABLE gongji.wallets (
    psn_id     integer PRIMARY KEY,
    balc_fen   bigint NOT NULL CHECK (balc_fen >= 0)
);

CREATE TABLE gongji.institutions (
    inst_id         integer PRIMARY KEY,
    fixmedins_code  text NOT NULL UNIQUE,
    fixmedins_name  text NOT NULL,
    fixmedins_type  text NOT NULL,
    admdvs          integer NOT NULL
);

CREATE TABLE gongji.bindings (
    binding_id       bigint PRIMARY KEY,
    giver_psn_id     integer NOT NULL,
    receiver_psn_id  integer NOT NULL,
    relation         text NOT NULL,
    scope            text NOT NULL CHECK (scope IN ('in_province', 'wallet_only')),
    priority         integer NOT NULL,
    active           boolean NOT NULL
);
CREATE INDEX bindings_giver ON gongji.bindings (giver_psn_id);
CREATE INDEX bindings_receiver ON gongji.bindings (receiver_psn_id);

-- Settlements (instant call). `province` is the person's; `cross_pool`: a paying giver is in
-- another pooling area (rule 17).
CREATE TABLE gongji.settlements (
    setl_id          bigint PRIMARY KEY,
    psn_id           integer NOT NULL,
    inst_id          integer NOT NULL,
    setl_time        bigint NOT NULL,
    period           text NOT NULL,
    province         smallint NOT NULL,
    medfee_sumamt    bigint NOT NULL,
    fund_pay_sumamt  bigint NOT NULL,
    psn_part_amt     bigint NOT NULL,
    acct_pay         bigint NOT NULL,
    wallet_pay       bigint NOT NULL,
    acct_mulaid_pay  bigint NOT NULL,
    psn_cash_pay     bigint NOT NULL,
    acct_balc        bigint NOT NULL,
    wallet_balc      bigint NOT NULL,
    cross_pool       boolean NOT NULL,
    cancelled        boolean NOT NULL
);
CREATE INDEX settlements_period ON gongji.settlements (period, province);

-- Who paid what of a settlement's acct_mulaid_pay, in drawing order.
CREATE TABLE gongji.settlement_details (
    setl_id       bigint NOT NULL,
    seq           smallint NOT NULL,
    giver_psn_id  integer NOT NULL,
    amount_fen    bigint NOT NULL,
    PRIMARY KEY (setl_id, seq)
);

-- Wallet transfers. `province` is the sender's; `resolved_at`/`resolved_period`: when it was
-- accepted, declined or returned (accepted ones count in that month, rule 17).
CREATE TABLE gongji.wallet_transfers (
    transfer_id      bigint PRIMARY KEY,
    from_psn_id      integer NOT NULL,
    to_psn_id        integer NOT NULL,
    amount_fen       bigint NOT NULL,
    source           text NOT NULL CHECK (source IN ('acct', 'wallet')),
    cross_province   boolean NOT NULL,
    province         smallint NOT NULL,
    status           text NOT NULL CHECK (status IN ('pending', 'accepted', 'declined', 'returned')),
    created          bigint NOT NULL,
    expires_at       bigint NOT NULL,
    resolved_at      bigint,
    resolved_period  text
);
CREATE INDEX wallet_transfers_resolved ON gongji.wallet_transfers (resolved_period, province);

-- Resident contributions paid from a relative's account. `province` is the resident's.
CREATE TABLE gongji.contributions (
    contribution_id  bigint PRIMARY KEY,
    payer_psn_id     integer NOT NULL,
    psn_id           integer NOT NULL,
    year             smallint NOT NULL,
    amount_fen       bigint NOT NULL,
    paid_at          bigint NOT NULL,
    period           text NOT NULL,
    province         smallint NOT NULL,
    cross_pool       boolean NOT NULL,
    acct_balc        bigint NOT NULL
);

-- Every movement on an account or wallet. Counterparty is a person or an institution;
-- ref_kind names what ref_id is ('settlement', 'transfer', 'contribution', 'period' with
-- ref_id = year*12 + month - 1).
CREATE TABLE gongji.entries (
    entry_id                bigint PRIMARY KEY,
    psn_id                  integer NOT NULL,
    wallet                  boolean NOT NULL,
    kind                    text NOT NULL,
    entry_time              bigint NOT NULL,
    amount_fen              bigint NOT NULL,
    balc_fen                bigint NOT NULL,
    counterparty_psn_id     integer,
    counterparty_inst_id    integer,
    ref_kind                text NOT NULL,
    ref_id                  bigint NOT NULL
);
CREATE INDEX entries_psn ON gongji.entries (psn_id, entry_id);

-- The statistics table of DOMAIN.md rule 17 by month and province, computed from the rows
-- exactly as the engine's counters are kept: account_draw = settlements not cancelled with
-- acct_mulaid_pay > 0 (in the settlement's month, the person's province) plus contributions
-- (the resident's province), split same_pool / cross_pool; wallet_transfer = accepted
-- transfers in the month accepted (the sender's province), split in_province / cross_province.
CREATE VIEW gongji.stats_cells (period, province, channel, count, amount_fen) AS
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
    FROM gongji.wallet_transfers WHERE status = 'accepted'
    GROUP BY 1, 2, 3;

CREATE VIEW gongji.stats_monthly AS
    SELECT period, province,
           sum(count)::bigint AS total_count,
           sum(amount_fen)::bigint AS total_amount_fen,
           coalesce(sum(count) FILTER (WHERE channel IN ('same_pool', 'cross_pool')), 0)::bigint
               AS account_draw_count,
           coalesce(sum(amount_fen) FILTER (WHERE channel IN ('same_pool', 'cross_pool')), 0)::bigint
               AS account_draw_amount_fen,
           coalesce(sum(count) FILTER (WHERE channel = 'same_pool'), 0)::bigint AS same_pool_count,
           coalesce(sum(amount_fen) FILTER (WHERE channel = 'same_pool'), 0)::bigint
               AS same_pool_amount_fen,
           coalesce(sum(count) FILTER (WHERE channel = 'cross_pool'), 0)::bigint AS cross_pool_count,
           coalesce(sum(amount_fen) FILTER (WHERE channel = 'cross_pool'), 0)::bigint
               AS cross_pool_amount_fen,
           coalesce(sum(count) FILTER (WHERE channel IN ('in_province', 'cross_province')), 0)::bigint
               AS wallet_transfer_count,
           coalesce(sum(amount_fen) FILTER (WHERE channel IN ('in_province', 'cross_province')), 0)::bigint
               AS wallet_transfer_amount_fen,
           coalesce(sum(count) FILTER (WHERE channel = 'in_province'), 0)::bigint AS in_province_count,
           coalesce(sum(amount_fen) FILTER (WHERE channel = 'in_province'), 0)::bigint
               AS in_province_amount_fen,
           coalesce(sum(count) FILTER (WHERE channel = 'cross_province'), 0)::bigint
               AS cross_province_count,
           coalesce(sum(amount_fen) FILTER (WHERE channel = 'cross_province'), 0)::bigint
               AS cross_province_amount_fen
    FROM gongji.stats_cells
    GROUP BY period, province;

-- The same for the whole country, by month.
CREATE VIEW gongji.stats_monthly_national AS
    SELECT period,
           sum(total_count)::bigint AS total_count, sum(total_amount_fen)::bigint AS total_amount_fen,
           sum(account_draw_count)::bigint AS account_draw_count,
           sum(account_draw_amount_fen)::bigint AS account_draw_amount_fen,
           sum(same_pool_count)::bigint AS same_pool_count,
           sum(same_pool_amount_fen)::bigint AS same_pool_amount_fen,
           sum(cross_pool_count)::bigint AS cross_pool_count,
           sum(cross_pool_amount_fen)::bigint AS cross_pool_amount_fen,
           sum(wallet_transfer_count)::bigint AS wallet_transfer_count,
           sum(wallet_transfer_amount_fen)::bigint AS wallet_transfer_amount_fen,
           sum(in_province_count)::bigint AS in_province_count,
           sum(in_province_amount_fen)::bigint AS in_province_amount_fen,
           sum(cross_province_count)::bigint AS cross_province_count,
           sum(cross_province_amount_fen)::bigint AS cross_province_amount_fen
    FROM gongji.stats_monthly
    GROUP BY period;
