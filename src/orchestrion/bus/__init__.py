"""Message buses: run events (and, later, peers' mail) shared between processes."""
