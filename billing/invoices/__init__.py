"""Invoices and credit notes: issued from a closed month's statement, numbered from one sequence, frozen once issued.

`services` issues them (and edits the billing details and the issuer they are addressed from),
`selectors` lists them, `pdf` renders the PDF stored beside each one.
"""
