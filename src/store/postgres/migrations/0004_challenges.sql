-- Purser's fleet store, version 4: remembered 402 challenges, shared. A replica that
-- passes a 402 back remembers its challenge and shares it here, so the paid retry may
-- come through any replica (replicas behind a load balancer). Each row is the engine's
-- own small form of it (what pricing reads), under the engine's key.

CREATE TABLE purser_challenges (
    agent   TEXT NOT NULL,
    session TEXT NOT NULL,
    key     TEXT NOT NULL,
    form    TEXT NOT NULL,
    seen    TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (agent, session, key)
);
CREATE INDEX purser_challenges_agent_seen ON purser_challenges (agent, seen);

-- Shares one challenge, and keeps the agent's shared challenges within p_keep (its
-- oldest go first) and within the last hour: an agent that asks for many 402s cannot
-- fill the table.
CREATE FUNCTION purser_share_challenge(p_agent TEXT, p_session TEXT, p_key TEXT, p_form TEXT,
                                       p_keep INTEGER) RETURNS VOID
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM set_config('synchronous_commit', 'off', true);
    INSERT INTO purser_challenges AS c (agent, session, key, form)
         VALUES (p_agent, p_session, p_key, p_form)
    ON CONFLICT (agent, session, key) DO UPDATE SET form = EXCLUDED.form, seen = now();
    DELETE FROM purser_challenges
     WHERE agent = p_agent
       AND (seen < now() - interval '1 hour'
            OR (session, key) IN (SELECT c.session, c.key FROM purser_challenges c
                                   WHERE c.agent = p_agent
                                   ORDER BY c.seen DESC OFFSET p_keep));
END $$;
