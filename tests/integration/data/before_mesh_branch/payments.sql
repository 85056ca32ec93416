BEGIN TRANSACTION;
CREATE TABLE alembic_version (
	version_num VARCHAR(32) NOT NULL, 
	CONSTRAINT alembic_version_pkc PRIMARY KEY (version_num)
);
INSERT INTO "alembic_version" VALUES('0003');
CREATE TABLE inbox (
	handler VARCHAR(200) NOT NULL, 
	event_id VARCHAR(36) NOT NULL, 
	processed_at DATETIME NOT NULL, 
	PRIMARY KEY (handler, event_id)
);
INSERT INTO "inbox" VALUES('payments.on_payment_requested','5649b2a1-cc3d-4672-92ac-b5011d1580ba','2026-11-27 03:09:47.775362');
INSERT INTO "inbox" VALUES('payments.on_payment_requested','18cb0396-57be-4a8f-ad76-5a91834550de','2026-11-27 03:09:47.781283');
INSERT INTO "inbox" VALUES('payments.on_order_rejected','593849a2-f914-4ff7-8d17-25586d099984','2026-11-27 03:09:47.809936');
INSERT INTO "inbox" VALUES('payments.on_order_cancelling','85d9f1d7-7c44-46df-99f6-b80f29190c6e','2026-11-27 03:09:49.789120');
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
INSERT INTO "outbox" VALUES(1,'37b0daa8-28aa-4435-8917-ec6f2635af46','payment_captured',1,'2026-11-27 03:09:47.777942','1b66c85df3234be693893823bc993d8f','{"order_id":1,"payment_id":1,"amount_cents":2500}','2026-11-27 03:09:47.800480',NULL);
INSERT INTO "outbox" VALUES(2,'4d0552e2-c2e6-45e3-9bdd-cb490652267f','payment_declined',1,'2026-11-27 03:09:47.781720','858f07fc8b014076a80cdf4f9f2d432a','{"order_id":2,"reason":"card_declined"}','2026-11-27 03:09:47.807042',NULL);
INSERT INTO "outbox" VALUES(3,'a4057823-ae1a-4377-9002-e2535fa4c5ba','payment_refunded',1,'2026-11-27 03:09:49.790508','869493dc39b8439d95f2d00ce55e1bbd','{"order_id":1,"payment_id":1,"amount_cents":2500}','2026-11-27 03:09:49.797722',NULL);
CREATE TABLE "payments" (
	id INTEGER NOT NULL, 
	order_id INTEGER NOT NULL, 
	amount_cents BIGINT NOT NULL, 
	status VARCHAR(16) NOT NULL, 
	provider_ref VARCHAR(100), 
	decline_reason VARCHAR(100), 
	created_at DATETIME NOT NULL, 
	updated_at DATETIME NOT NULL, 
	PRIMARY KEY (id), 
	CONSTRAINT status_known CHECK (status IN ('captured', 'declined', 'refunded')), 
	UNIQUE (order_id)
);
INSERT INTO "payments" VALUES(1,1,2500,'refunded','sim_ch_e454c304ac1959d8b3ed825cc1feff29',NULL,'2026-11-27 03:09:47.777494','2026-11-27 03:09:49.790260');
INSERT INTO "payments" VALUES(2,2,1250,'declined',NULL,'card_declined','2026-11-27 03:09:47.781476','2026-11-27 03:09:47.781478');
CREATE INDEX ix_outbox_unpublished ON outbox (published_at, id);
COMMIT;
