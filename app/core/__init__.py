"""What every part of the studio shares below the store: settings, safe text,
background tasks and outbound calls with retries."""
