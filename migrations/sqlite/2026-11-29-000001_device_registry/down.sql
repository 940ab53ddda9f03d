DROP TABLE broker_password_outbox; DROP TABLE device_registry;
