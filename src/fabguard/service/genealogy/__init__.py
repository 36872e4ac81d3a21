"""Unit search and genealogy: everything known about one serial, from its first test to the field."""
