"""ui/views."""
