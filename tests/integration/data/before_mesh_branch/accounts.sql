BEGIN TRANSACTION;
CREATE TABLE alembic_version (
	version_num VARCHAR(32) NOT NULL, 
	CONSTRAINT alembic_version_pkc PRIMARY KEY (version_num)
);
INSERT INTO "alembic_version" VALUES('0003');
CREATE TABLE outbox (
	id INTEGER NOT NULL, 
	event_id VARCHAR(36) NOT NULL, 
	type VARCHAR(100) NOT NULL, 
	version INTEGER NOT NULL, 
	occurred_at DATETIME NOT NULL, 
	correlation_id VARCHAR(64), 
	data TEXT NOT NULL, 
	published_at DATETIME, traceparent VARCHAR(55), 
	PRIMARY KEY (id), 
	UNIQUE (event_id)
);
INSERT INTO "outbox" VALUES(1,'5055205c-830f-4e27-bd6f-36d058ad7848','user_registered',1,'2026-11-27 03:09:47.373449','7b67bd901a5948198a34f4040b333f36','{"user_id":2,"email":"ann@example.com","name":"Ann"}','2026-11-27 03:09:47.391949',NULL);
CREATE TABLE users (
	id INTEGER NOT NULL, 
	email VARCHAR(254) NOT NULL, 
	name VARCHAR(100) NOT NULL, 
	role VARCHAR(16) NOT NULL, 
	password_hash VARCHAR(255) NOT NULL, 
	created_at DATETIME NOT NULL, 
	PRIMARY KEY (id), 
	CONSTRAINT role_known CHECK (role IN ('customer', 'admin')), 
	UNIQUE (email)
);
INSERT INTO "users" VALUES(1,'admin@example.com','Administrator','admin','$argon2id$v=19$m=65536,t=3,p=4$sOTiUeZvon6FqU1kHqNhNw$bgkW+ZaBAFY5X0tcD4aYpdT0WSe2Es7Vq8okhC32GRo','2026-11-27 03:09:46.404364');
INSERT INTO "users" VALUES(2,'ann@example.com','Ann','customer','$argon2id$v=19$m=65536,t=3,p=4$f2XR+busava4HMVkOhKL4Q$bO66tZMSYmD551DfsljvI0Gd9DqICEvSthL/7lhGQX8','2026-11-27 03:09:47.372873');
CREATE INDEX ix_outbox_unpublished ON outbox (published_at, id);
COMMIT;
