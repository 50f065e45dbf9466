"""Tests of the card and OBU codecs and readers."""
