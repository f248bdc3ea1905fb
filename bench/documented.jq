# The documented profile as a jq program: the jq baseline of bench/compare.sh.
# Run as `jq -R -c -f bench/documented.jq` (one raw line in, one ECS document out),
# so that `message` can be the original line.

def txt:
  if . == null then null
  elif type == "string" then (if . == "" or . == "None" then null else . end)
  elif type == "boolean" or type == "number" then tojson
  else tojson end;

def pad6: tostring | (("000000" + .)[-6:]);

def parse_time:
  txt as $t
  | if $t == null then null
    elif ($t | test("^-?[0-9]+$")) then
      ($t | tonumber) as $n
      | if $n > 100000000000 then {s: (($n / 1000) | floor), us: (($n % 1000) * 1000)} else {s: $n, us: 0} end
    else
      ([$t | capture("^(?<d>[0-9]{4}-[0-9]{2}-[0-9]{2})[Tt ](?<h>[0-9]{2}:[0-9]{2}:[0-9]{2})(\\.(?<f>[0-9]{1,9}))?(?<z>[Zz]|[+-][0-9]{2}:?[0-9]{2})?$")][0]) as $m
      | if $m == null then null else
          ((($m.d + "T" + $m.h + "Z") | try fromdateiso8601 catch null)) as $base
          | if $base == null then null else
              (if $m.z == null or $m.z == "Z" or $m.z == "z" then 0
               else ($m.z | gsub(":"; "")) as $z
                 | (($z[1:3] | tonumber) * 3600 + ($z[3:5] | tonumber) * 60) * (if $z[0:1] == "-" then -1 else 1 end)
               end) as $off
              | {s: ($base - $off), us: (if $m.f == null then 0 else (($m.f + "00000000")[0:6] | tonumber) end)}
            end
        end
    end;

def fmt_time: (.s | todate) as $d | (.us | pad6) as $us | if .us == 0 then $d else ($d | sub("Z$"; "." + $us + "Z")) end;

def strip2: if . == null then null else (explode | if length > 4 then .[2:-2] | implode else null end) end;

def valid_ip:
  test("^((25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])\\.){3}(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])$")
  or (test("^[0-9A-Fa-f:.]+$") and test(":"));

def prune: with_entries(select(.value != null)) | with_entries(if (.value | type) == "object" then .value |= prune else . end)
  | with_entries(select(.value != {} ));

. as $line
| ($line | fromjson) as $o
| (if ($o.message | type) == "string" and ($o.message | test("^\\s*\\{")) then {msg: $o.message, row: ($o.message | fromjson)} else {msg: $line, row: $o} end) as $in
| $in.row as $r
| ($r.meta_public_ip | txt) as $addr
| (if $addr != null and ($addr | valid_ip) then $addr else null end) as $ip
| ($r.meta_username | txt) as $user
| ($r.ioc_severity | txt) as $sev
| ([$r.calendar_time, $r.unix_time, $r.ioc_unix_time, $r.ingestion_timestamp] | map(parse_time) | map(select(. != null)) | .[0]) as $time
| {
    message: $in.msg,
    event: {
      kind: "event",
      severity: (if $sev != null and ($sev | test("^[+-]?[0-9]+$")) then ($sev | tonumber) else null end),
      reason: ($r.description | txt),
      code: ($r.ioc_detection_id | txt)
    },
    "@timestamp": (if $time == null then (now | floor | todate) else ($time | fmt_time) end),
    user: {name: $user},
    registry: {
      path: ($r.path | txt), key: ($r.key | txt),
      data: {type: ($r.type | txt), strings: [($r.data | txt) // ""]}
    },
    source: {
      ip: $ip, mac: ($r.meta_mac_address | txt),
      geo: {
        country_iso_code: ($r.meta_public_ip_country_code | txt), postal_code: ($r.meta_public_ip_postal | txt),
        city_name: ($r.meta_public_ip_city | txt), country_name: ($r.meta_public_ip_country | txt)
      },
      address: $addr
    },
    host: {
      name: ($r.meta_hostname | txt), id: ($r.host_identifier | txt),
      os: {name: ($r.meta_os_name | txt), version: ($r.meta_os_version | txt)},
      domain: ($r.subject_domain | txt)
    },
    vulnerability: {reference: ($r.ioc_detection_references | txt | strip2), description: ($r.ioc_detection_description | txt)},
    sophos: {threat_center: {
      cvss: ($r.ioc_detection_cvss | txt), id: ($r.endpoint_id | txt), detection_attack: ($r.ioc_detection_attack | txt),
      query: {source: ($r.query_source | txt), action: ($r.osquery_action | txt), pack_version: ($r.meta_query_pack_version | txt), name: ($r.query_name | txt)},
      endpoint: {type: ($r.meta_endpoint_type | txt)}
    }},
    related: {ip: (if $ip != null then [$ip] else null end), user: (if $user != null then [$user] else null end)}
  }
| prune
