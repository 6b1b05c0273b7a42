"""One module per part of the report; each returns its part of the template's context."""
