DROP TABLE violation_disputes;
