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
INSERT INTO "inbox" VALUES('orders.on_stock_reserved','07869e3e-aa76-4cc5-87bb-3b9d13ea619b','2026-11-27 03:09:47.768057');
INSERT INTO "inbox" VALUES('orders.on_stock_reserved','31d0d90f-e76e-4084-8393-42a96ce254b8','2026-11-27 03:09:47.773826');
INSERT INTO "inbox" VALUES('orders.on_payment_captured','37b0daa8-28aa-4435-8917-ec6f2635af46','2026-11-27 03:09:47.800700');
INSERT INTO "inbox" VALUES('orders.on_payment_declined','4d0552e2-c2e6-45e3-9bdd-cb490652267f','2026-11-27 03:09:47.804992');
INSERT INTO "inbox" VALUES('orders.on_payment_refunded','a4057823-ae1a-4377-9002-e2535fa4c5ba','2026-11-27 03:09:49.793312');
INSERT INTO "inbox" VALUES('orders.on_stock_released','262573bc-5db9-4b21-afee-661928c9b281','2026-11-27 03:09:49.795018');
CREATE TABLE order_lines (
	order_id INTEGER NOT NULL, 
	product_id INTEGER NOT NULL, 
	quantity INTEGER NOT NULL, 
	unit_price_cents INTEGER NOT NULL, 
	PRIMARY KEY (order_id, product_id), 
	CONSTRAINT quantity_positive CHECK (quantity > 0), 
	FOREIGN KEY(order_id) REFERENCES orders (id)
);
INSERT INTO "order_lines" VALUES(1,1,2,1250);
INSERT INTO "order_lines" VALUES(2,1,1,1250);
CREATE TABLE "orders" (
	id INTEGER NOT NULL, 
	user_id INTEGER NOT NULL, 
	status VARCHAR(16) NOT NULL, 
	reason VARCHAR(32), 
	total_cents BIGINT NOT NULL, 
	card_token VARCHAR(80) NOT NULL, 
	stock_state VARCHAR(16) NOT NULL, 
	payment_state VARCHAR(16) NOT NULL, 
	idempotency_key VARCHAR(128), 
	request_hash VARCHAR(64), 
	created_at DATETIME NOT NULL, 
	updated_at DATETIME NOT NULL, 
	PRIMARY KEY (id), 
	CONSTRAINT one_order_per_key UNIQUE (user_id, idempotency_key), 
	CONSTRAINT status_known CHECK (status IN ('pending', 'confirmed', 'rejected', 'cancelling', 'cancelled'))
);
INSERT INTO "orders" VALUES(1,2,'cancelled',NULL,2500,'tok_visa','released','refunded','first-mug-order','ab937235d3f6ef5b647c46b8b7768f9f1c58c72a50d6ae7ef13e036778b313b2','2026-11-27 03:09:47.739217','2026-11-27 03:09:49.795414');
INSERT INTO "orders" VALUES(2,2,'rejected','payment_declined',1250,'tok_declined','reserved','declined','second','c458decdff601c24c7e101e531e2a42c56e597a5c9ddf58353f5055d0841128d','2026-11-27 03:09:47.763089','2026-11-27 03:09:47.805120');
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
INSERT INTO "outbox" VALUES(1,'85d288e8-f53b-4f89-92f5-fdcf858f341c','order_created',1,'2026-11-27 03:09:47.740825','1b66c85df3234be693893823bc993d8f','{"order_id":1,"user_id":2,"lines":[{"product_id":1,"quantity":2}],"total_cents":2500}','2026-11-27 03:09:47.753258',NULL);
INSERT INTO "outbox" VALUES(2,'80efac6a-e924-4ca7-b45b-63e41c6f7add','order_created',1,'2026-11-27 03:09:47.763893','858f07fc8b014076a80cdf4f9f2d432a','{"order_id":2,"user_id":2,"lines":[{"product_id":1,"quantity":1}],"total_cents":1250}','2026-11-27 03:09:47.772324',NULL);
INSERT INTO "outbox" VALUES(3,'5649b2a1-cc3d-4672-92ac-b5011d1580ba','payment_requested',1,'2026-11-27 03:09:47.771402','1b66c85df3234be693893823bc993d8f','{"order_id":1,"user_id":2,"amount_cents":2500,"card_token":"tok_visa"}','2026-11-27 03:09:47.777598',NULL);
INSERT INTO "outbox" VALUES(4,'18cb0396-57be-4a8f-ad76-5a91834550de','payment_requested',1,'2026-11-27 03:09:47.774090','858f07fc8b014076a80cdf4f9f2d432a','{"order_id":2,"user_id":2,"amount_cents":1250,"card_token":"tok_declined"}','2026-11-27 03:09:47.778964',NULL);
INSERT INTO "outbox" VALUES(5,'f54fc83c-5ec3-482b-8c51-7dc1f50e5e42','order_confirmed',1,'2026-11-27 03:09:47.801888','1b66c85df3234be693893823bc993d8f','{"order_id":1,"user_id":2,"total_cents":2500,"reason":null}','2026-11-27 03:09:47.807032',NULL);
INSERT INTO "outbox" VALUES(6,'593849a2-f914-4ff7-8d17-25586d099984','order_rejected',1,'2026-11-27 03:09:47.805821','858f07fc8b014076a80cdf4f9f2d432a','{"order_id":2,"user_id":2,"total_cents":1250,"reason":"payment_declined"}','2026-11-27 03:09:47.809794',NULL);
INSERT INTO "outbox" VALUES(7,'85d9f1d7-7c44-46df-99f6-b80f29190c6e','order_cancelling',1,'2026-11-27 03:09:49.783096','869493dc39b8439d95f2d00ce55e1bbd','{"order_id":1,"user_id":2,"total_cents":2500,"reason":null}','2026-11-27 03:09:49.790301',NULL);
INSERT INTO "outbox" VALUES(8,'8bc55a28-08b4-42c3-838b-184637a1dcab','order_cancelled',1,'2026-11-27 03:09:49.795655','869493dc39b8439d95f2d00ce55e1bbd','{"order_id":1,"user_id":2,"total_cents":2500,"reason":null}','2026-11-27 03:09:49.799448',NULL);
CREATE INDEX ix_outbox_unpublished ON outbox (published_at, id);
CREATE INDEX ix_orders_status ON orders (status);
CREATE INDEX ix_orders_user_id ON orders (user_id);
CREATE INDEX ix_orders_updated_at ON orders (updated_at);
COMMIT;
