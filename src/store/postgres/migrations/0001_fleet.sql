-- Purser's fleet store, version 1: budgets, reservations and their leases, phases, the
-- replay set, payments whose outcome is unknown, holds and open transactions.
--
-- Money is NUMERIC (USD), never a float. Every change to money locks the one row of
-- purser_fleet first, then agents, then sessions: one lock order for every transaction,
-- so concurrent decisions on any number of replicas queue instead of deadlocking.

CREATE TABLE purser_fleet (
    id        SMALLINT PRIMARY KEY CHECK (id = 1),
    committed NUMERIC NOT NULL DEFAULT 0,
    unknown   NUMERIC NOT NULL DEFAULT 0,
    reserved  NUMERIC NOT NULL DEFAULT 0
);
INSERT INTO purser_fleet (id) VALUES (1);

CREATE TABLE purser_agents (
    agent     TEXT PRIMARY KEY,
    committed NUMERIC NOT NULL DEFAULT 0,
    unknown   NUMERIC NOT NULL DEFAULT 0,
    reserved  NUMERIC NOT NULL DEFAULT 0
);

-- A session's budget and its phase: a phase moved through any replica holds on all.
CREATE TABLE purser_sessions (
    session   TEXT PRIMARY KEY,
    agent     TEXT NOT NULL,
    phase     TEXT NOT NULL DEFAULT 'EXPLORE' CHECK (phase IN ('EXPLORE', 'DECIDE', 'COMMIT')),
    committed NUMERIC NOT NULL DEFAULT 0,
    unknown   NUMERIC NOT NULL DEFAULT 0,
    reserved  NUMERIC NOT NULL DEFAULT 0,
    created   TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- One row per running Purser process. A replica renews its lease while it lives; once
-- the lease has expired, any replica's sweeper turns its reservations into unknown
-- payments (still counted) and its pending holds into denials.
CREATE TABLE purser_instances (
    instance    BIGINT PRIMARY KEY,
    replica     TEXT NOT NULL,
    started     TIMESTAMPTZ NOT NULL DEFAULT now(),
    lease_until TIMESTAMPTZ NOT NULL
);

-- Money reserved by a payment being decided, held or in flight.
CREATE TABLE purser_reservations (
    id       BIGINT PRIMARY KEY,
    instance BIGINT NOT NULL,
    replica  TEXT NOT NULL,
    session  TEXT NOT NULL,
    agent    TEXT NOT NULL,
    pay_to   TEXT NOT NULL,
    amount   NUMERIC NOT NULL CHECK (amount >= 0),
    created  TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX purser_reservations_instance ON purser_reservations (instance);

-- Recipients each agent has paid with a successful receipt (recipient trust `known`).
CREATE TABLE purser_paid (
    agent  TEXT NOT NULL,
    pay_to TEXT NOT NULL,
    PRIMARY KEY (agent, pay_to)
);

-- The replay set: keys of payments forwarded, until they can no longer settle.
CREATE TABLE purser_replay_keys (
    key      TEXT PRIMARY KEY,
    until    BIGINT NOT NULL,  -- Unix seconds
    claim    BIGINT NOT NULL,  -- the claim that took it, so only that claim undoes it
    instance BIGINT NOT NULL
);
CREATE INDEX purser_replay_keys_until ON purser_replay_keys (until);

-- Payments that left with no answer that tells: counted as spent until reconciled.
CREATE TABLE purser_unknown (
    id                 TEXT PRIMARY KEY,  -- the decision's trace id, or rs_<reservation>
    reservation        BIGINT,
    origin             TEXT NOT NULL CHECK (origin IN ('settlement', 'lease_expired')),
    session            TEXT NOT NULL,
    agent              TEXT NOT NULL,
    pay_to             TEXT NOT NULL,
    amount             NUMERIC NOT NULL,
    since              TEXT NOT NULL,
    method             TEXT NOT NULL DEFAULT '',
    host               TEXT NOT NULL DEFAULT '',
    path               TEXT NOT NULL DEFAULT '',
    payment_digest     TEXT,
    resource           TEXT,
    why                TEXT,
    upstream_status    INTEGER,
    onchain            JSONB,    -- what the chain can be asked about it (x402::ChainAuthorization)
    retries            INTEGER NOT NULL DEFAULT 0,
    retry_instance     BIGINT,  -- set while the one retry allowed is in flight
    resolving_instance BIGINT   -- set while a resolution is being written
);
CREATE INDEX purser_unknown_reservation ON purser_unknown (reservation);

CREATE TABLE purser_unknown_keys (
    key TEXT PRIMARY KEY,
    id  TEXT NOT NULL REFERENCES purser_unknown (id) ON DELETE CASCADE
);
CREATE INDEX purser_unknown_keys_id ON purser_unknown_keys (id);

-- Holds, fleet-wide: listed by every replica, decided on any, released on the replica
-- that holds the request (NOTIFY purser_holds).
CREATE TABLE purser_holds (
    id       TEXT PRIMARY KEY,
    instance BIGINT NOT NULL,
    replica  TEXT NOT NULL,
    session  TEXT NOT NULL,
    digest   TEXT NOT NULL,
    view     JSONB NOT NULL,
    state    TEXT NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'decided')),
    outcome  JSONB,
    created  TIMESTAMPTZ NOT NULL DEFAULT now(),
    decided  TIMESTAMPTZ
);
CREATE INDEX purser_holds_pending ON purser_holds (session) WHERE state = 'pending';
CREATE INDEX purser_holds_decided ON purser_holds (decided) WHERE state = 'decided';

-- Settled payments of open transactions (X-Purser-Transaction), until compensated.
CREATE TABLE purser_transaction_steps (
    id          BIGINT PRIMARY KEY,  -- chosen by the replica, so a step recorded twice counts once
    ordinal     BIGSERIAL NOT NULL,  -- the order steps were recorded in
    agent       TEXT NOT NULL,
    transaction TEXT NOT NULL,
    payment     JSONB NOT NULL,
    created     TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX purser_transaction_steps_transaction ON purser_transaction_steps (transaction, agent);

-- Budget credits of compensated payments, by id, so a credit applied twice counts once.
CREATE TABLE purser_credits (
    id      BIGINT PRIMARY KEY,
    session TEXT NOT NULL,
    agent   TEXT NOT NULL,
    amount  NUMERIC NOT NULL,
    at      TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- Adds the deltas to one session, its agent and the fleet. The caller holds the fleet
-- row already (the lock order); agent and session rows are created on first sight.
CREATE FUNCTION purser_shift(p_session TEXT, p_agent TEXT, p_reserved NUMERIC,
                             p_committed NUMERIC, p_unknown NUMERIC) RETURNS VOID
LANGUAGE plpgsql AS $$
BEGIN
    UPDATE purser_fleet
       SET reserved = reserved + p_reserved, committed = committed + p_committed,
           unknown = unknown + p_unknown
     WHERE id = 1;
    INSERT INTO purser_agents AS a (agent, reserved, committed, unknown)
         VALUES (p_agent, p_reserved, p_committed, p_unknown)
    ON CONFLICT (agent) DO UPDATE
         SET reserved = a.reserved + p_reserved, committed = a.committed + p_committed,
             unknown = a.unknown + p_unknown;
    INSERT INTO purser_sessions AS s (session, agent, reserved, committed, unknown)
         VALUES (p_session, p_agent, p_reserved, p_committed, p_unknown)
    ON CONFLICT (session) DO UPDATE
         SET reserved = s.reserved + p_reserved, committed = s.committed + p_committed,
             unknown = s.unknown + p_unknown;
END $$;

-- Reserves a batch of payments, each atomically at session, agent and fleet level or
-- not at all. A cap is the limit times the halt ratio (NULL: no limit at that level).
-- Returns, per payment, the level that refused it (NULL when booked), the session's
-- phase, and the three accounts as they stood just before it: what the decision sees.
CREATE FUNCTION purser_reserve(
    p_ids BIGINT[], p_instance BIGINT, p_replica TEXT, p_sessions TEXT[], p_agents TEXT[],
    p_pay_to TEXT[], p_amounts NUMERIC[], p_session_caps NUMERIC[], p_agent_caps NUMERIC[],
    p_fleet_caps NUMERIC[])
RETURNS TABLE (r_id BIGINT, r_refused TEXT, r_phase TEXT,
               r_session_committed NUMERIC, r_session_unknown NUMERIC, r_session_reserved NUMERIC,
               r_agent_committed NUMERIC, r_agent_unknown NUMERIC, r_agent_reserved NUMERIC,
               r_fleet_committed NUMERIC, r_fleet_unknown NUMERIC, r_fleet_reserved NUMERIC)
LANGUAGE plpgsql AS $$
DECLARE
    f purser_fleet%ROWTYPE;
    a purser_agents%ROWTYPE;
    s purser_sessions%ROWTYPE;
    i INTEGER;
    amount NUMERIC;
BEGIN
    -- Committed without waiting for the disk: the payment leaves only after its replay
    -- keys are claimed with a commit that waits, and that flush covers this one too
    -- (the log is written in order). Meanwhile the hot budget rows are held briefly.
    PERFORM set_config('synchronous_commit', 'off', true);
    SELECT * INTO f FROM purser_fleet WHERE id = 1 FOR UPDATE;
    -- Agents, then sessions, in name order: the lock order. The batch's payments of one
    -- agent (and of one session) follow each other, so each row is read, locked and
    -- written once per batch: its running figures are kept here in between.
    FOR i IN SELECT g.i FROM generate_subscripts(p_ids, 1) AS g(i)
              ORDER BY p_agents[g.i], p_sessions[g.i] LOOP
        amount := p_amounts[i];
        IF a.agent IS DISTINCT FROM p_agents[i] THEN
            IF a.agent IS NOT NULL THEN
                UPDATE purser_agents SET reserved = a.reserved WHERE agent = a.agent;
            END IF;
            INSERT INTO purser_agents (agent) VALUES (p_agents[i]) ON CONFLICT DO NOTHING;
            SELECT * INTO a FROM purser_agents WHERE agent = p_agents[i] FOR UPDATE;
        END IF;
        IF s.session IS DISTINCT FROM p_sessions[i] THEN
            IF s.session IS NOT NULL THEN
                UPDATE purser_sessions SET reserved = s.reserved WHERE session = s.session;
            END IF;
            INSERT INTO purser_sessions (session, agent) VALUES (p_sessions[i], p_agents[i])
                ON CONFLICT DO NOTHING;
            SELECT * INTO s FROM purser_sessions WHERE session = p_sessions[i] FOR UPDATE;
        END IF;
        r_id := p_ids[i];
        r_phase := s.phase;
        r_session_committed := s.committed; r_session_unknown := s.unknown;
        r_session_reserved := s.reserved;
        r_agent_committed := a.committed; r_agent_unknown := a.unknown;
        r_agent_reserved := a.reserved;
        r_fleet_committed := f.committed; r_fleet_unknown := f.unknown;
        r_fleet_reserved := f.reserved;
        r_refused := CASE
            WHEN s.committed + s.unknown + s.reserved + amount > p_session_caps[i] THEN 'session'
            WHEN a.committed + a.unknown + a.reserved + amount > p_agent_caps[i] THEN 'agent'
            WHEN f.committed + f.unknown + f.reserved + amount > p_fleet_caps[i] THEN 'fleet'
        END;
        IF r_refused IS NULL THEN
            a.reserved := a.reserved + amount;
            s.reserved := s.reserved + amount;
            f.reserved := f.reserved + amount;
            INSERT INTO purser_reservations (id, instance, replica, session, agent, pay_to, amount)
                 VALUES (p_ids[i], p_instance, p_replica, p_sessions[i], p_agents[i],
                         p_pay_to[i], amount);
        END IF;
        RETURN NEXT;
    END LOOP;
    IF a.agent IS NOT NULL THEN
        UPDATE purser_agents SET reserved = a.reserved WHERE agent = a.agent;
    END IF;
    IF s.session IS NOT NULL THEN
        UPDATE purser_sessions SET reserved = s.reserved WHERE session = s.session;
    END IF;
    UPDATE purser_fleet SET reserved = f.reserved WHERE id = 1;
END $$;

-- Claims the replay keys of a batch of payments: each claim gets all of its keys or none.
-- p_keys[i] belongs to claim p_claims[i]. A key is free when absent or past its `until`.
-- Keys are taken in key order (the lock order); of two claims in the batch sharing a key,
-- the first listed gets it.
CREATE FUNCTION purser_claim_keys(p_claims BIGINT[], p_keys TEXT[], p_until BIGINT[],
                                  p_now BIGINT, p_instance BIGINT)
RETURNS TABLE (r_claim BIGINT, r_claimed BOOLEAN)
LANGUAGE plpgsql AS $$
DECLARE
    failed BIGINT[];
BEGIN
    WITH wanted AS (
        SELECT w.claim, w.key, w.until, w.ord = min(w.ord) OVER (PARTITION BY w.key) AS first
          FROM unnest(p_claims, p_keys, p_until) WITH ORDINALITY AS w(claim, key, until, ord)
    ), taken AS (
        INSERT INTO purser_replay_keys AS k (key, until, claim, instance)
        SELECT wanted.key, wanted.until, wanted.claim, p_instance
          FROM wanted WHERE wanted.first ORDER BY wanted.key
        ON CONFLICT (key) DO UPDATE
            SET until = EXCLUDED.until, claim = EXCLUDED.claim, instance = EXCLUDED.instance
            WHERE k.until < p_now
        RETURNING k.key, k.claim
    )
    SELECT array_agg(DISTINCT w.claim) INTO failed
      FROM wanted w
     WHERE NOT EXISTS (SELECT 1 FROM taken t WHERE t.key = w.key AND t.claim = w.claim);
    IF failed IS NOT NULL THEN
        -- A claim that did not get every key gives back the ones it got.
        DELETE FROM purser_replay_keys k WHERE k.key = ANY (p_keys) AND k.claim = ANY (failed);
    END IF;
    RETURN QUERY SELECT DISTINCT c.claim, NOT (c.claim = ANY (coalesce(failed, '{}')))
                   FROM unnest(p_claims) AS c(claim);
END $$;

-- Ends a reservation: 'committed', 'released' or 'unknown' (then p_unknown has the
-- details). Applying it twice changes nothing the second time. A reservation already
-- swept as unknown (its replica's lease expired) is reconciled by its late settlement.
CREATE FUNCTION purser_settle(p_id BIGINT, p_outcome TEXT, p_unknown JSONB) RETURNS VOID
LANGUAGE plpgsql AS $$
DECLARE
    r purser_reservations%ROWTYPE;
    u purser_unknown%ROWTYPE;
BEGIN
    PERFORM 1 FROM purser_fleet WHERE id = 1 FOR UPDATE;
    DELETE FROM purser_reservations WHERE id = p_id RETURNING * INTO r;
    IF FOUND THEN
        PERFORM purser_shift(r.session, r.agent, -r.amount,
                             CASE WHEN p_outcome = 'committed' THEN r.amount ELSE 0 END,
                             CASE WHEN p_outcome = 'unknown' THEN r.amount ELSE 0 END);
        IF p_outcome = 'committed' THEN
            INSERT INTO purser_paid VALUES (r.agent, r.pay_to) ON CONFLICT DO NOTHING;
        ELSIF p_outcome = 'unknown' THEN
            PERFORM purser_insert_unknown(r, p_unknown, 'settlement');
        END IF;
        RETURN;
    END IF;
    SELECT * INTO u FROM purser_unknown
     WHERE reservation = p_id AND origin = 'lease_expired' FOR UPDATE;
    IF NOT FOUND OR p_outcome = 'unknown' THEN
        RETURN;  -- settled already, or still unknown: it stays counted as it is
    END IF;
    DELETE FROM purser_unknown WHERE id = u.id;
    PERFORM purser_shift(u.session, u.agent, 0,
                         CASE WHEN p_outcome = 'committed' THEN u.amount ELSE 0 END, -u.amount);
    IF p_outcome = 'committed' THEN
        INSERT INTO purser_paid VALUES (u.agent, u.pay_to) ON CONFLICT DO NOTHING;
    END IF;
END $$;

-- Ends many reservations as committed or released in one statement: each account is
-- updated once however many of its payments settle. Returns the ids it did not find
-- (settled already, or swept as unknown: purser_settle handles those one by one). The
-- caller holds the fleet row.
CREATE FUNCTION purser_settle_many(p_ids BIGINT[], p_outcomes TEXT[]) RETURNS BIGINT[]
LANGUAGE plpgsql AS $$
DECLARE
    missing BIGINT[];
BEGIN
    WITH wanted AS (
        SELECT * FROM unnest(p_ids, p_outcomes) AS w(id, outcome)
    ), done AS (
        DELETE FROM purser_reservations r USING wanted w WHERE r.id = w.id
        RETURNING r.id, r.session, r.agent, r.pay_to, r.amount,
                  CASE WHEN w.outcome = 'committed' THEN r.amount ELSE 0 END AS committed
    ), sessions AS (
        UPDATE purser_sessions s SET reserved = s.reserved - d.amount,
                                     committed = s.committed + d.committed
          FROM (SELECT session, sum(amount) AS amount, sum(committed) AS committed
                  FROM done GROUP BY session) d
         WHERE s.session = d.session
    ), agents AS (
        UPDATE purser_agents a SET reserved = a.reserved - d.amount,
                                   committed = a.committed + d.committed
          FROM (SELECT agent, sum(amount) AS amount, sum(committed) AS committed
                  FROM done GROUP BY agent) d
         WHERE a.agent = d.agent
    ), fleet AS (
        UPDATE purser_fleet f SET reserved = f.reserved - d.amount,
                                  committed = f.committed + d.committed
          FROM (SELECT coalesce(sum(amount), 0) AS amount,
                       coalesce(sum(committed), 0) AS committed FROM done) d
         WHERE f.id = 1
    ), paid AS (
        INSERT INTO purser_paid (agent, pay_to)
        SELECT DISTINCT agent, pay_to FROM done WHERE committed > 0
        ON CONFLICT DO NOTHING
    )
    SELECT array_agg(w.id) INTO missing
      FROM wanted w WHERE NOT EXISTS (SELECT 1 FROM done d WHERE d.id = w.id);
    RETURN missing;
END $$;

-- Records a reservation as an unknown payment, with the details its settlement gave.
CREATE FUNCTION purser_insert_unknown(r purser_reservations, d JSONB, p_origin TEXT)
RETURNS VOID
LANGUAGE plpgsql AS $$
DECLARE
    unknown_id TEXT := coalesce(d->>'id', 'rs_' || r.id);
BEGIN
    INSERT INTO purser_unknown (id, reservation, origin, session, agent, pay_to, amount, since,
                                method, host, path, payment_digest, resource, why,
                                upstream_status, onchain)
    VALUES (unknown_id, r.id, p_origin, r.session, r.agent, r.pay_to, r.amount,
            coalesce(d->>'since', to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"')),
            coalesce(d->>'method', ''), coalesce(d->>'host', ''), coalesce(d->>'path', ''),
            d->>'payment_digest', d->>'resource', d->>'why', (d->>'upstream_status')::INTEGER,
            nullif(d->'onchain', 'null'::jsonb))
    ON CONFLICT DO NOTHING;
    INSERT INTO purser_unknown_keys (key, id)
    SELECT k, unknown_id FROM jsonb_array_elements_text(coalesce(d->'keys', '[]')) AS k
    ON CONFLICT (key) DO UPDATE SET id = EXCLUDED.id;
END $$;

-- Resolves an unknown payment: committed moves it to spent for good, otherwise it is
-- given back. Returns nothing when no unknown payment has that id.
CREATE FUNCTION purser_resolve_unknown(p_id TEXT, p_committed BOOLEAN)
RETURNS TABLE (r_session TEXT, r_agent TEXT, r_amount NUMERIC, r_pay_to TEXT)
LANGUAGE plpgsql AS $$
DECLARE
    u purser_unknown%ROWTYPE;
BEGIN
    PERFORM 1 FROM purser_fleet WHERE id = 1 FOR UPDATE;
    DELETE FROM purser_unknown WHERE id = p_id RETURNING * INTO u;
    IF NOT FOUND THEN
        RETURN;
    END IF;
    PERFORM purser_shift(u.session, u.agent, 0,
                         CASE WHEN p_committed THEN u.amount ELSE 0 END, -u.amount);
    IF p_committed THEN
        INSERT INTO purser_paid VALUES (u.agent, u.pay_to) ON CONFLICT DO NOTHING;
    END IF;
    RETURN QUERY SELECT u.session, u.agent, u.amount, u.pay_to;
END $$;

-- Applies a batch of plain writes, in order, as one transaction. Each write is safe to
-- apply twice (a replica applies its recent writes again after the store restarted).
-- Returns the server's start time: a replica that sees it change applies its latest
-- batches again, in case the restart lost them (they are committed without waiting for
-- the disk).
CREATE FUNCTION purser_apply(p_writes JSONB, p_instance BIGINT) RETURNS TIMESTAMPTZ
LANGUAGE plpgsql AS $$
DECLARE
    w JSONB;
    ids BIGINT[] := '{}';
    outcomes TEXT[] := '{}';
    late BIGINT;
BEGIN
    PERFORM set_config('synchronous_commit', 'off', true);
    PERFORM 1 FROM purser_fleet WHERE id = 1 FOR UPDATE;
    FOR w IN SELECT * FROM jsonb_array_elements(p_writes) LOOP
        -- Committed and released settlements are gathered and applied together; any
        -- other write applies those gathered so far first, so the order holds.
        IF w->>'op' = 'settle' AND w->>'outcome' IN ('committed', 'released') THEN
            ids := ids || (w->>'id')::BIGINT;
            outcomes := outcomes || (w->>'outcome');
            CONTINUE;
        END IF;
        IF cardinality(ids) > 0 THEN
            FOR late IN SELECT unnest(purser_settle_many(ids, outcomes)) LOOP
                PERFORM purser_settle(late, outcomes[array_position(ids, late)], NULL);
            END LOOP;
            ids := '{}';
            outcomes := '{}';
        END IF;
        CASE w->>'op'
        WHEN 'settle' THEN
            PERFORM purser_settle((w->>'id')::BIGINT, w->>'outcome', w->'unknown');
        WHEN 'credit' THEN
            INSERT INTO purser_credits (id, session, agent, amount)
                 VALUES ((w->>'id')::BIGINT, w->>'session', w->>'agent', (w->>'amount')::NUMERIC)
            ON CONFLICT DO NOTHING;
            IF FOUND THEN
                PERFORM purser_shift(w->>'session', w->>'agent', 0, -(w->>'amount')::NUMERIC, 0);
            END IF;
        WHEN 'forget_keys' THEN
            DELETE FROM purser_replay_keys
             WHERE key IN (SELECT jsonb_array_elements_text(w->'keys'));
        WHEN 'forget_claim' THEN
            DELETE FROM purser_replay_keys WHERE claim = (w->>'claim')::BIGINT;
        WHEN 'release_retry' THEN
            UPDATE purser_unknown SET retry_instance = NULL
             WHERE id = w->>'id' AND retry_instance = p_instance;
        WHEN 'unresolving' THEN
            UPDATE purser_unknown SET resolving_instance = NULL
             WHERE id = w->>'id' AND resolving_instance = p_instance;
        WHEN 'close_hold' THEN
            UPDATE purser_holds SET state = 'decided', outcome = w->'outcome', decided = now()
             WHERE id = w->>'id' AND state = 'pending';
        WHEN 'step' THEN
            INSERT INTO purser_transaction_steps (id, agent, transaction, payment)
                 VALUES ((w->>'id')::BIGINT, w->>'agent', w->>'transaction', w->'payment')
            ON CONFLICT DO NOTHING;
        ELSE
            NULL;  -- written by a newer Purser: left for it
        END CASE;
    END LOOP;
    IF cardinality(ids) > 0 THEN
        FOR late IN SELECT unnest(purser_settle_many(ids, outcomes)) LOOP
            PERFORM purser_settle(late, outcomes[array_position(ids, late)], NULL);
        END LOOP;
    END IF;
    RETURN pg_postmaster_start_time();
END $$;

-- Opens a hold within the fleet-wide bounds. Returns NULL when opened, or the bound that
-- refused it: 'total' or 'session'.
CREATE FUNCTION purser_open_hold(p_id TEXT, p_instance BIGINT, p_replica TEXT, p_session TEXT,
                                 p_digest TEXT, p_view JSONB, p_per_session INTEGER,
                                 p_total INTEGER) RETURNS TEXT
LANGUAGE plpgsql AS $$
BEGIN
    -- Counting and inserting as one step: holds are opened one at a time, fleet-wide.
    PERFORM pg_advisory_xact_lock(hashtext('purser_holds'));
    IF (SELECT count(*) FROM purser_holds WHERE state = 'pending') >= p_total THEN
        RETURN 'total';
    END IF;
    IF (SELECT count(*) FROM purser_holds WHERE state = 'pending' AND session = p_session)
        >= p_per_session THEN
        RETURN 'session';
    END IF;
    INSERT INTO purser_holds (id, instance, replica, session, digest, view)
         VALUES (p_id, p_instance, p_replica, p_session, p_digest, p_view);
    RETURN NULL;
END $$;

-- Decides a pending hold, once, and tells the replica holding its request (NOTIFY,
-- delivered when this transaction commits). p_digest, when given, must be the held
-- payment's. Status: 'decided', 'unknown', 'already' (with the outcome that won) or
-- 'mismatch'.
CREATE FUNCTION purser_decide_hold(p_id TEXT, p_outcome JSONB, p_digest TEXT)
RETURNS TABLE (r_status TEXT, r_instance BIGINT, r_view JSONB, r_outcome JSONB)
LANGUAGE plpgsql AS $$
DECLARE
    h purser_holds%ROWTYPE;
BEGIN
    SELECT * INTO h FROM purser_holds WHERE id = p_id FOR UPDATE;
    IF NOT FOUND THEN
        RETURN QUERY SELECT 'unknown'::TEXT, NULL::BIGINT, NULL::JSONB, NULL::JSONB;
        RETURN;
    END IF;
    IF h.state <> 'pending' THEN
        RETURN QUERY SELECT 'already'::TEXT, h.instance, h.view, h.outcome;
        RETURN;
    END IF;
    IF p_digest IS NOT NULL AND lower(p_digest) <> lower(h.digest) THEN
        RETURN QUERY SELECT 'mismatch'::TEXT, h.instance, h.view, NULL::JSONB;
        RETURN;
    END IF;
    UPDATE purser_holds SET state = 'decided', outcome = p_outcome, decided = now()
     WHERE id = p_id;
    PERFORM pg_notify('purser_holds',
                      jsonb_build_object('id', p_id, 'instance', h.instance,
                                         'outcome', p_outcome)::TEXT);
    RETURN QUERY SELECT 'decided'::TEXT, h.instance, h.view, p_outcome;
END $$;

-- Turns what a replica whose lease expired left behind into what the fleet can see and
-- reconcile: its reservations become unknown payments (still counted, never released),
-- its pending holds are denied, its retry claims and resolutions in progress are let go.
-- Returns the unknown payments made, for the sweeping replica's proof log.
CREATE FUNCTION purser_sweep(p_instance BIGINT, p_why TEXT)
RETURNS TABLE (r_id TEXT, r_session TEXT, r_agent TEXT, r_amount NUMERIC, r_pay_to TEXT)
LANGUAGE plpgsql AS $$
DECLARE
    r purser_reservations%ROWTYPE;
BEGIN
    PERFORM 1 FROM purser_fleet WHERE id = 1 FOR UPDATE;
    FOR r IN DELETE FROM purser_reservations WHERE instance = p_instance RETURNING * LOOP
        PERFORM purser_shift(r.session, r.agent, -r.amount, 0, r.amount);
        PERFORM purser_insert_unknown(r, jsonb_build_object('why', p_why), 'lease_expired');
        r_id := 'rs_' || r.id; r_session := r.session; r_agent := r.agent;
        r_amount := r.amount; r_pay_to := r.pay_to;
        RETURN NEXT;
    END LOOP;
    UPDATE purser_holds
       SET state = 'decided', decided = now(),
           outcome = jsonb_build_object('outcome', 'shutdown', 'by', 'fleet', 'reason', p_why)
     WHERE instance = p_instance AND state = 'pending';
    UPDATE purser_unknown SET retry_instance = NULL WHERE retry_instance = p_instance;
    UPDATE purser_unknown SET resolving_instance = NULL WHERE resolving_instance = p_instance;
    DELETE FROM purser_instances WHERE instance = p_instance;
END $$;
