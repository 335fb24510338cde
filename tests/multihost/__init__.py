"""Tests of several hosts (app processes with instance folders of their own) sharing one store server."""
