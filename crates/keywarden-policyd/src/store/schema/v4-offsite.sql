-- The offsite audit copy: per collector (its address as configured), the last entry and the last
-- stored checkpoint it acknowledged. Written by the shipper's own connection after each
-- acknowledged batch; a new collector address starts from the beginning of the trail.
CREATE TABLE offsite_position (
    collector TEXT PRIMARY KEY CHECK (length(collector) >= 1),
    entry_seq INTEGER NOT NULL CHECK (entry_seq >= 0),
    checkpoint_seq INTEGER NOT NULL CHECK (checkpoint_seq >= 0),
    acked_at_ms INTEGER NOT NULL
) STRICT;
