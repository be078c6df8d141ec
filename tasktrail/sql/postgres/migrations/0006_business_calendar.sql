-- Migration 6: schedules that follow a business calendar (`calendar=` on a schedule):
-- the country or region, the rule (every business day, the first or the last of the
-- month) and extra closed days, as JSON text; NULL for a schedule without one.
-- A nullable column without a default: no rewrite.

ALTER TABLE tasktrail.schedules ADD COLUMN IF NOT EXISTS calendar text;
