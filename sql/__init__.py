"""The named queries, shipped inside the wheel as the package service.sql.

This folder is the SREs' front door: each .sql file holds the queries of one
domain under `-- name: ... :kind` headers. The service reads them with
importlib.resources, from the checkout or from an installed wheel alike.
"""
