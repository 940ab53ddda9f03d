DROP TABLE notification_attempts;
DROP TABLE notifications;
DROP TABLE case_history;
DROP TABLE cases;
DROP TABLE complaints;
DROP TABLE parties;
