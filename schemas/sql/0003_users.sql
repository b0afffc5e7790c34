-- Migration 3 (SQLite): users of the auth-api and the tenants granted to them.
-- Email and username are stored lowercase; the UNIQUE constraints are what make registration
-- race-free (a second concurrent INSERT with the same value fails, whichever process it runs in).
-- Several users may have no username (NULLs are distinct in a UNIQUE column).
CREATE TABLE users (
    id            TEXT    NOT NULL PRIMARY KEY,  -- UUID, hyphenated lowercase
    email         TEXT    NOT NULL UNIQUE,       -- lowercase
    username      TEXT             UNIQUE,       -- lowercase, optional
    password_hash TEXT    NOT NULL,              -- bcrypt ($2b$...), never returned by the API
    created_at    INTEGER NOT NULL,              -- epoch ms
    updated_at    INTEGER NOT NULL               -- epoch ms
) WITHOUT ROWID;

-- Which tenants' dashboards a user may read. Rows are removed with the user.
CREATE TABLE user_tenants (
    user_id    TEXT    NOT NULL,
    tenant_id  TEXT    NOT NULL,
    granted_at INTEGER NOT NULL,  -- epoch ms of the first grant
    PRIMARY KEY (user_id, tenant_id)
) WITHOUT ROWID;
