-- Purser's fleet store, version 2: the fleet's proof log. Every replica keeps its own
-- hash-chained file and copies each line here, byte for byte, numbered in its chain, so
-- any replica's GET /v1/traces shows the fleet and `purser traces verify --store URL`
-- checks every replica's chain.

CREATE TABLE purser_trace_lines (
    replica   TEXT NOT NULL,
    seq       BIGINT NOT NULL,  -- the line's place in this replica's copy, from 1
    hash      TEXT NOT NULL,    -- SHA-256 (hex) of the line
    prev_hash TEXT NOT NULL,    -- the hash the line chains from
    line      TEXT NOT NULL,    -- the line as written, without its newline
    trace_id  TEXT NOT NULL,
    kind      TEXT NOT NULL,
    session   TEXT NOT NULL DEFAULT '',
    agent     TEXT NOT NULL DEFAULT '',
    decision  TEXT,
    stored    TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (replica, seq)
);
CREATE INDEX purser_trace_lines_stored ON purser_trace_lines (stored);
CREATE INDEX purser_trace_lines_session ON purser_trace_lines (session, stored);
CREATE INDEX purser_trace_lines_trace ON purser_trace_lines (trace_id);

-- Copies a run of one replica's lines. The file is the durable record; this copy is
-- committed without waiting for the disk, and a replica copies again from its file
-- what the store lacks when it starts.
CREATE FUNCTION purser_ship_lines(p_replica TEXT, p_seq BIGINT[], p_hash TEXT[],
                                  p_prev TEXT[], p_line TEXT[], p_trace TEXT[],
                                  p_kind TEXT[], p_session TEXT[], p_agent TEXT[],
                                  p_decision TEXT[]) RETURNS VOID
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM set_config('synchronous_commit', 'off', true);
    INSERT INTO purser_trace_lines (replica, seq, hash, prev_hash, line, trace_id, kind,
                                    session, agent, decision)
    SELECT p_replica, l.* FROM unnest(p_seq, p_hash, p_prev, p_line, p_trace, p_kind,
                                      p_session, p_agent, p_decision) AS l
    ON CONFLICT (replica, seq) DO NOTHING;
END $$;
