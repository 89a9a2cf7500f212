-- Purser's fleet store, version 3: one round trip per decision.
--
-- purser_decide does what purser_reserve did, and screens each payment's replay keys in
-- the same transaction: a key of an unknown payment ('unknown_key': the engine then
-- checks whether the payment is that one's retry), a key already remembered
-- ('replayed'), and otherwise the keys are claimed with the reservation. The fleet row's
-- lock, taken first as everywhere, serializes it with every other change to money and to
-- the replay set. It commits without waiting for the disk, so that lock is never held
-- through a flush: the replica sends a transaction that commits waiting for the disk
-- right behind it (`SELECT txid_current()`, in the same round trip), and a payment
-- leaves only once both have answered, its reservation and keys durable.

CREATE FUNCTION purser_decide(
    p_ids BIGINT[], p_instance BIGINT, p_replica TEXT, p_sessions TEXT[], p_agents TEXT[],
    p_pay_to TEXT[], p_amounts NUMERIC[], p_session_caps NUMERIC[], p_agent_caps NUMERIC[],
    p_fleet_caps NUMERIC[], p_keys JSONB[], p_until BIGINT[], p_now BIGINT)
RETURNS TABLE (r_id BIGINT, r_refused TEXT, r_seen INTEGER, r_phase TEXT,
               r_session_committed NUMERIC, r_session_unknown NUMERIC, r_session_reserved NUMERIC,
               r_agent_committed NUMERIC, r_agent_unknown NUMERIC, r_agent_reserved NUMERIC,
               r_fleet_committed NUMERIC, r_fleet_unknown NUMERIC, r_fleet_reserved NUMERIC)
LANGUAGE plpgsql AS $$
DECLARE
    f purser_fleet%ROWTYPE;
    a purser_agents%ROWTYPE;
    s purser_sessions%ROWTYPE;
    i INTEGER;
    j INTEGER;
    amount NUMERIC;
    keys TEXT[];
    claimed INTEGER;
    screened TEXT[];
    seen INTEGER[];
BEGIN
    PERFORM set_config('synchronous_commit', 'off', true);
    -- The screen reads before the fleet row is locked, so the lock is held for the money
    -- only. A key claimed meanwhile is caught when this batch claims it (below).
    screened := array_fill(NULL::TEXT, ARRAY[cardinality(p_ids)]);
    seen := array_fill(NULL::INTEGER, ARRAY[cardinality(p_ids)]);
    FOR i IN 1 .. coalesce(cardinality(p_ids), 0) LOOP
        CONTINUE WHEN p_keys[i] IS NULL;
        keys := ARRAY(SELECT jsonb_array_elements_text(p_keys[i]));
        IF EXISTS (SELECT 1 FROM purser_unknown_keys WHERE key = ANY (keys)) THEN
            screened[i] := 'unknown_key';
            CONTINUE;
        END IF;
        -- One primary-key probe per key, whatever the planner thinks of the replay
        -- set's size.
        FOR j IN 1 .. coalesce(cardinality(keys), 0) LOOP
            PERFORM 1 FROM purser_replay_keys WHERE key = keys[j] AND until >= p_now;
            IF FOUND THEN
                screened[i] := 'replayed';
                seen[i] := j - 1;
                EXIT;
            END IF;
        END LOOP;
    END LOOP;
    SELECT * INTO f FROM purser_fleet WHERE id = 1 FOR UPDATE;
    -- Agents, then sessions, in name order (the lock order); each row is read, locked and
    -- written once per batch, its running figures kept here in between.
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
        r_seen := seen[i];
        r_refused := screened[i];
        keys := NULL;
        IF p_keys[i] IS NOT NULL THEN
            keys := ARRAY(SELECT jsonb_array_elements_text(p_keys[i]));
        END IF;
        IF r_refused IS NULL THEN
            r_refused := CASE
                WHEN s.committed + s.unknown + s.reserved + amount > p_session_caps[i] THEN 'session'
                WHEN a.committed + a.unknown + a.reserved + amount > p_agent_caps[i] THEN 'agent'
                WHEN f.committed + f.unknown + f.reserved + amount > p_fleet_caps[i] THEN 'fleet'
            END;
        END IF;
        IF r_refused IS NULL AND keys IS NOT NULL THEN
            -- A key remembered past its time is taken over; one still remembered (claimed
            -- since the screen looked, or outside the fleet row's lock) makes the payment
            -- a replay.
            INSERT INTO purser_replay_keys AS k (key, until, claim, instance)
            SELECT DISTINCT w.key, p_until[i], p_ids[i], p_instance FROM unnest(keys) AS w(key)
            ON CONFLICT (key) DO UPDATE
                SET until = EXCLUDED.until, claim = EXCLUDED.claim, instance = EXCLUDED.instance
                WHERE k.until < p_now;
            GET DIAGNOSTICS claimed = ROW_COUNT;
            IF claimed < (SELECT count(DISTINCT w.key) FROM unnest(keys) AS w(key)) THEN
                DELETE FROM purser_replay_keys WHERE key = ANY (keys) AND claim = p_ids[i];
                r_refused := 'replayed';
                r_seen := 0;
            END IF;
        END IF;
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

-- Plain writes, as version 1 applied them, in order.
ALTER FUNCTION purser_apply(JSONB, BIGINT) RENAME TO purser_apply_in_order;

-- Applies a batch of plain writes. The usual batch is settlements that commit or release
-- alone: read before the fleet row is locked, then applied together, so the lock every
-- decision waits for is held only for the money. Any other batch is applied in order.
CREATE FUNCTION purser_apply(p_writes JSONB, p_instance BIGINT) RETURNS TIMESTAMPTZ
LANGUAGE plpgsql AS $$
DECLARE
    ids BIGINT[];
    outcomes TEXT[];
    only_settlements BOOLEAN;
    late BIGINT;
BEGIN
    SELECT array_agg((e.w->>'id')::BIGINT ORDER BY e.o), array_agg(e.w->>'outcome' ORDER BY e.o),
           bool_and(e.w->>'op' = 'settle' AND e.w->>'outcome' IN ('committed', 'released'))
      INTO ids, outcomes, only_settlements
      FROM jsonb_array_elements(p_writes) WITH ORDINALITY AS e(w, o);
    IF NOT coalesce(only_settlements, false) THEN
        RETURN purser_apply_in_order(p_writes, p_instance);
    END IF;
    PERFORM set_config('synchronous_commit', 'off', true);
    PERFORM 1 FROM purser_fleet WHERE id = 1 FOR UPDATE;
    FOR late IN SELECT unnest(purser_settle_many(ids, outcomes)) LOOP
        PERFORM purser_settle(late, outcomes[array_position(ids, late)], NULL);
    END LOOP;
    RETURN pg_postmaster_start_time();
END $$;
