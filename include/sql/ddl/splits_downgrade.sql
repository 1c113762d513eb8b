-- Revision 0002 downgrade: what 0002 added, and only that.
DROP TABLE IF EXISTS split_reloads;
DROP TABLE IF EXISTS adjustment_basis;
DROP TABLE IF EXISTS split_watermark;
