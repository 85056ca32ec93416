BEGIN TRANSACTION;
CREATE TABLE alembic_version (
	version_num VARCHAR(32) NOT NULL, 
	CONSTRAINT alembic_version_pkc PRIMARY KEY (version_num)
);
INSERT INTO "alembic_version" VALUES('0004');
CREATE TABLE inbox (
	handler VARCHAR(200) NOT NULL, 
	event_id VARCHAR(36) NOT NULL, 
	processed_at DATETIME NOT NULL, 
	PRIMARY KEY (handler, event_id)
);
INSERT INTO "inbox" VALUES('inventory.on_order_created','85d288e8-f53b-4f89-92f5-fdcf858f341c','2026-11-27 03:09:47.749058');
INSERT INTO "inbox" VALUES('inventory.on_order_created','80efac6a-e924-4ca7-b45b-63e41c6f7add','2026-11-27 03:09:47.768327');
INSERT INTO "inbox" VALUES('inventory.on_order_confirmed','f54fc83c-5ec3-482b-8c51-7dc1f50e5e42','2026-11-27 03:09:47.804852');
INSERT INTO "inbox" VALUES('inventory.on_order_rejected','593849a2-f914-4ff7-8d17-25586d099984','2026-11-27 03:09:47.815812');
INSERT INTO "inbox" VALUES('inventory.on_order_cancelling','85d9f1d7-7c44-46df-99f6-b80f29190c6e','2026-11-27 03:09:49.788775');
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
INSERT INTO "outbox" VALUES(1,'07869e3e-aa76-4cc5-87bb-3b9d13ea619b','stock_reserved',1,'2026-11-27 03:09:47.751839','1b66c85df3234be693893823bc993d8f','{"order_id":1}','2026-11-27 03:09:47.766766',NULL);
INSERT INTO "outbox" VALUES(2,'31d0d90f-e76e-4084-8393-42a96ce254b8','stock_reserved',1,'2026-11-27 03:09:47.768987','858f07fc8b014076a80cdf4f9f2d432a','{"order_id":2}','2026-11-27 03:09:47.771191',NULL);
INSERT INTO "outbox" VALUES(3,'262573bc-5db9-4b21-afee-661928c9b281','stock_released',1,'2026-11-27 03:09:49.789497','869493dc39b8439d95f2d00ce55e1bbd','{"order_id":1}','2026-11-27 03:09:49.797749',NULL);
CREATE TABLE products (
	id INTEGER NOT NULL, 
	sku VARCHAR(64) NOT NULL, 
	name VARCHAR(200) NOT NULL, 
	price_cents INTEGER NOT NULL, 
	stock INTEGER NOT NULL, 
	created_at DATETIME NOT NULL, 
	PRIMARY KEY (id), 
	CONSTRAINT price_positive CHECK (price_cents > 0), 
	CONSTRAINT stock_not_negative CHECK (stock >= 0), 
	UNIQUE (sku)
);
INSERT INTO "products" VALUES(1,'MUG-1','Mug',1250,15,'2026-11-27 03:09:47.698270');
CREATE TABLE reservation_lines (
	order_id INTEGER NOT NULL, 
	product_id INTEGER NOT NULL, 
	quantity INTEGER NOT NULL, 
	PRIMARY KEY (order_id, product_id), 
	CONSTRAINT quantity_positive CHECK (quantity > 0), 
	FOREIGN KEY(order_id) REFERENCES reservations (order_id), 
	FOREIGN KEY(product_id) REFERENCES products (id)
);
INSERT INTO "reservation_lines" VALUES(1,1,2);
INSERT INTO "reservation_lines" VALUES(2,1,1);
CREATE TABLE reservations (
	order_id INTEGER NOT NULL, 
	status VARCHAR(16) NOT NULL, 
	short_product_ids VARCHAR(1024) NOT NULL, 
	created_at DATETIME NOT NULL, 
	updated_at DATETIME NOT NULL, 
	PRIMARY KEY (order_id), 
	CONSTRAINT status_known CHECK (status IN ('reserved', 'rejected', 'committed', 'released'))
);
INSERT INTO "reservations" VALUES(1,'released','','2026-11-27 03:09:47.750733','2026-11-27 03:09:49.789105');
INSERT INTO "reservations" VALUES(2,'released','','2026-11-27 03:09:47.768744','2026-11-27 03:09:47.816238');
CREATE TABLE rpc_requests (
	"key" VARCHAR(64) NOT NULL, 
	applied_at DATETIME NOT NULL, 
	PRIMARY KEY ("key")
);
INSERT INTO "rpc_requests" VALUES('f640be1a-27dc-4057-aa15-fcb124897495','2026-11-27 03:09:47.713859');
CREATE INDEX ix_outbox_unpublished ON outbox (published_at, id);
COMMIT;
