-- Purser's fleet store, version 5: purser_decide (version 3) does all that version 1's
-- purser_reserve did, and no Purser calls purser_reserve any more, so it goes.

DROP FUNCTION purser_reserve(BIGINT[], BIGINT, TEXT, TEXT[], TEXT[], TEXT[], NUMERIC[],
                             NUMERIC[], NUMERIC[], NUMERIC[]);
