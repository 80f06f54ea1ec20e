"""Tests of the pure routing package."""
