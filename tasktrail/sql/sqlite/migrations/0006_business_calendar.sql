-- Migration 6 (SQLite): schedules that follow a business calendar (see the PostgreSQL
-- migration of the same number).

ALTER TABLE schedules ADD COLUMN calendar TEXT;
