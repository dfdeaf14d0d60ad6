"""Our own network's calls: accounting legs joined into xDRs (PortaBilling's "xDR calculation").

The legs are loaded like any record (layout ``leg``, table ``legs``; the built-in format ``radius-detail`` reads
FreeRADIUS detail files). This package reads them from the catalog and never reaches back into the loader:

- :mod:`.settings`: ``[[nodes]]`` (trusted gateways and PBX nodes), ``[legs]``, ``[alerts]``, typed.
- :mod:`.join`: :func:`~ingest.legs.join.join_legs`, one transaction, set-based, run after each load of a file of
  legs (``App.file_loaded``) and by ``cdr legs join|close``.
- :mod:`.views`: xDRs, their legs and details, orphans, waiting calls, alerts, for the CLI and the console.
- :mod:`.alerts`: mailing security alerts.

The rules of joining:

- **Call id**: the first of the node's ``call_id`` attributes a leg has (default ``h323-conf-id``, else
  ``call-id``); a leg without one is an orphan (``no-call-id``).
- **Sessions**: the Start and the Stop of one session share its ``Acct-Unique-Session-Id`` (else the node's
  ``Acct-Session-Id``). A call is **complete** when every session that started has stopped, and every trusted node
  a leg names other than its own (its User-Name: the node relayed the call; else its remote address: the call went
  on to the node) has sent a Stop of the call. Until then its legs wait in ``pending_legs``.
- **Window**: a call none of whose legs is newer than ``[legs] window_hours`` (default 4) before the newest
  accounting time loaded (``cdr legs close``: before now) is closed: its xDR is ``incomplete`` (reason ``no-stop``
  or ``no-record-from-node:NAME``) and its legs are orphans. A leg of a call already produced is an orphan
  (``late``), never a second xDR: the database's unique key (carrier, call id, party) and ``xdr_legs``'s primary
  key (a leg in one xDR) see to it.
- **Parties**: the legs of a call from gateways (every node but a PBX, and every address that is no node) are one
  party, billed once; each session of a PBX node (``kind = "pbx"``) is a party of its own, as a PBX bills each
  participant of a forwarded or transferred call. One xDR per party.
- **Account**: a party's User-Name is the terminating gateway's (its originate leg to outside our network), else an
  answer leg's, else any leg's, leaving out User-Names that are trusted nodes' addresses (the call takes the
  account from the relaying node's own record); the account is that User-Name as an account, else as a number
  held on the call's UTC date. None: a **security alert**, one per xDR (unique), logged and mailed.
- **Durations**: the charged duration is the longest ``Acct-Session-Time`` of the party's Stop legs; the call
  duration is its ``media_duration`` call detail when it has one, else the charged duration.
- **PBX call details**: ``via_hg``, ``via_ext``, ``media_duration``, ``acli``, read from attributes of those
  names (or ``Cisco-AVPair = "name=value"``) unless a node's (or ``[legs]``'s) ``details`` names others, kept per
  xDR in ``xdr_details``.

xDRs are calls of the billing run (:mod:`ingest.billing.run`, source kind ``xdr``), billed once.
"""
