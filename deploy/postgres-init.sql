-- One database per service: no service reads another's tables.
CREATE DATABASE accounts;
CREATE DATABASE inventory;
CREATE DATABASE orders;
CREATE DATABASE payments;
CREATE DATABASE notifications;
