"""`sealcam up`: first-run setup, the two buses, and every service as a supervised subprocess."""
