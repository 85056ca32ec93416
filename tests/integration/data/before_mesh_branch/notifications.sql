BEGIN TRANSACTION;
CREATE TABLE alembic_version (
	version_num VARCHAR(32) NOT NULL, 
	CONSTRAINT alembic_version_pkc PRIMARY KEY (version_num)
);
INSERT INTO "alembic_version" VALUES('0001');
CREATE TABLE inbox (
	handler VARCHAR(200) NOT NULL, 
	event_id VARCHAR(36) NOT NULL, 
	processed_at DATETIME NOT NULL, 
	PRIMARY KEY (handler, event_id)
);
INSERT INTO "inbox" VALUES('notifications.on_user_registered','5055205c-830f-4e27-bd6f-36d058ad7848','2026-11-27 03:09:47.386385');
INSERT INTO "inbox" VALUES('notifications.on_order_confirmed','f54fc83c-5ec3-482b-8c51-7dc1f50e5e42','2026-11-27 03:09:47.810850');
INSERT INTO "inbox" VALUES('notifications.on_order_rejected','593849a2-f914-4ff7-8d17-25586d099984','2026-11-27 03:09:47.813338');
INSERT INTO "inbox" VALUES('notifications.on_order_cancelled','8bc55a28-08b4-42c3-838b-184637a1dcab','2026-11-27 03:09:49.799982');
CREATE TABLE notifications (
	id INTEGER NOT NULL, 
	user_id INTEGER NOT NULL, 
	kind VARCHAR(32) NOT NULL, 
	subject VARCHAR(200) NOT NULL, 
	body TEXT NOT NULL, 
	order_id INTEGER, 
	event_id VARCHAR(36) NOT NULL, 
	created_at DATETIME NOT NULL, 
	PRIMARY KEY (id), 
	UNIQUE (event_id)
);
INSERT INTO "notifications" VALUES(1,2,'welcome','Welcome, Ann','Your account ann@example.com is ready.',NULL,'5055205c-830f-4e27-bd6f-36d058ad7848','2026-11-27 03:09:47.387772');
INSERT INTO "notifications" VALUES(2,2,'order_confirmed','Order 1 confirmed','We have your payment of 2500 cents; order 1 is confirmed.',1,'f54fc83c-5ec3-482b-8c51-7dc1f50e5e42','2026-11-27 03:09:47.812005');
INSERT INTO "notifications" VALUES(3,2,'order_rejected','Order 2 could not be completed','Order 2 was rejected (payment_declined). Any payment taken for it is refunded.',2,'593849a2-f914-4ff7-8d17-25586d099984','2026-11-27 03:09:47.813581');
INSERT INTO "notifications" VALUES(4,2,'order_cancelled','Order 1 cancelled','Order 1 is cancelled and 2500 cents refunded.',1,'8bc55a28-08b4-42c3-838b-184637a1dcab','2026-11-27 03:09:49.800335');
CREATE INDEX ix_notifications_user_id ON notifications (user_id);
COMMIT;
