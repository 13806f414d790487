-- The sender of an exchange received here, as its Prepare named them (docs/FEDERATION.md);
-- null on the sender side (`psn_id` is the sender there) and for a record made before the
-- receiver's engine kept it, or blocked before its Prepare arrived.
ALTER TABLE gongji.exchanges ADD COLUMN from_psn_no text;
