"""What the JSON API and the HTML pages share below both: CSRF, login sessions, job submission, ZIPs."""
