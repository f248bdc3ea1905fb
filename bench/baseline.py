#!/usr/bin/env python3
"""The documented profile as a plain Python 3 script (standard `json` module only):
the Python baseline of bench/compare.sh. Reads NDJSON on stdin, writes ECS NDJSON."""
import ipaddress
import json
import re
import sys
from datetime import datetime, timedelta, timezone

TIME_KEYS = ("calendar_time", "unix_time", "ioc_unix_time", "ingestion_timestamp")
TIME_RE = re.compile(r"^(\d{4})-(\d\d)-(\d\d)[Tt ](\d\d):(\d\d):(\d\d)(?:\.(\d{1,9}))?([Zz]|[+-]\d\d:?\d\d)?$")
EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def text(v):
    if v is None:
        return None
    if isinstance(v, bool):
        s = "true" if v else "false"
    elif isinstance(v, str):
        s = v
    elif isinstance(v, (int, float)):
        s = json.dumps(v)
    else:
        s = json.dumps(v, separators=(",", ":"), ensure_ascii=False)
    return None if s in ("", "None") else s


def parse_time(v):
    t = text(v)
    if t is None:
        return None
    if re.fullmatch(r"-?\d+", t):
        n = int(t)
        try:
            return EPOCH + (timedelta(milliseconds=n) if n > 10**11 else timedelta(seconds=n))
        except OverflowError:
            return None
    m = TIME_RE.match(t)
    if not m:
        return None
    y, mo, d, h, mi, s, frac, zone = m.groups()
    try:
        dt = datetime(int(y), int(mo), int(d), int(h), int(mi), int(s), int((frac or "0").ljust(9, "0")[:6]), tzinfo=timezone.utc)
    except ValueError:
        return None
    if zone and zone not in "Zz":
        z = zone.replace(":", "")
        off = timedelta(hours=int(z[1:3]), minutes=int(z[3:5]))
        dt = dt - off if z[0] == "+" else dt + off
    return dt


def fmt_time(dt):
    base = dt.strftime("%Y-%m-%dT%H:%M:%S")
    return base + ("Z" if dt.microsecond == 0 else ".%06dZ" % dt.microsecond)


def valid_ip(s):
    try:
        ipaddress.ip_address(s)
        return "%" not in s
    except ValueError:
        return False


def prune(d):
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            v = prune(v)
            if not v:
                continue
        if v is not None:
            out[k] = v
    return out


def normalize(line):
    o = json.loads(line)
    m = o.get("message")
    if isinstance(m, str) and m.lstrip().startswith("{"):
        msg, r = m, json.loads(m)
    else:
        msg, r = line, o
    t = lambda k: text(r.get(k))
    addr = t("meta_public_ip")
    ip = addr if addr is not None and valid_ip(addr) else None
    user = t("meta_username")
    sev = t("ioc_severity")
    times = [dt for dt in (parse_time(r.get(k)) for k in TIME_KEYS) if dt is not None]
    ref = t("ioc_detection_references")
    ref = ref[2:-2] if ref else None
    return prune({
        "message": msg,
        "event": {"kind": "event", "severity": int(sev) if sev is not None and re.fullmatch(r"[+-]?\d+", sev) else None,
                  "reason": t("description"), "code": t("ioc_detection_id")},
        "@timestamp": fmt_time(times[0] if times else datetime.now(timezone.utc)),
        "user": {"name": user},
        "registry": {"path": t("path"), "key": t("key"), "data": {"type": t("type"), "strings": [t("data") or ""]}},
        "source": {"ip": ip, "mac": t("meta_mac_address"),
                   "geo": {"country_iso_code": t("meta_public_ip_country_code"), "postal_code": t("meta_public_ip_postal"),
                           "city_name": t("meta_public_ip_city"), "country_name": t("meta_public_ip_country")},
                   "address": addr},
        "host": {"name": t("meta_hostname"), "id": t("host_identifier"),
                 "os": {"name": t("meta_os_name"), "version": t("meta_os_version")}, "domain": t("subject_domain")},
        "vulnerability": {"reference": ref or None, "description": t("ioc_detection_description")},
        "sophos": {"threat_center": {
            "cvss": t("ioc_detection_cvss"), "id": t("endpoint_id"), "detection_attack": t("ioc_detection_attack"),
            "query": {"source": t("query_source"), "action": t("osquery_action"),
                      "pack_version": t("meta_query_pack_version"), "name": t("query_name")},
            "endpoint": {"type": t("meta_endpoint_type")}}},
        "related": {"ip": [ip] if ip else None, "user": [user] if user else None},
    })


def main():
    out = sys.stdout
    for line in sys.stdin:
        line = line.rstrip("\r\n")
        if not line.strip():
            continue
        try:
            doc = normalize(line)
        except ValueError as e:
            print(f"reject: {e}", file=sys.stderr)
            continue
        out.write(json.dumps(doc, ensure_ascii=False, separators=(",", ":")))
        out.write("\n")


if __name__ == "__main__":
    main()
