"""Cost-spike alerts: rules checked as runs finish, delivered by webhook and e-mail."""
