"""execute/ray"""
