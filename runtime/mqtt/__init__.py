"""Reporting to the house over MQTT: track events, counts and availability, Home Assistant
discovery, and a queue on disk so that nothing is lost while the broker is away.

    settings    the broker's address (mqtt://, mqtts://), TLS CA, user and password (a file,
                $GCLF_MQTT_PASSWORD or systemd's LoadCredential=), never printed
    topics      the camera's name and its topics: gclf/<camera>/{event,counts,status,queue}
    payloads    what is published on them: events with a unique id, the counts
    disk_queue  the bounded, ordered queue of events on disk (one file per event)
    discovery   Home Assistant's retained homeassistant/<component>/<node>/<object>/config
    client      the paho-mqtt client, made once from the settings (the one place paho is
                imported, inside functions: a missing paho is a MissingDependencyError)
    publisher   MqttPublisher: a thread of its own, so the live loop never waits on the network
    check       check_broker(): whether the broker answers and takes the credentials (--check)
    sink        MqttSink: the live loop's sink that publishes the counts every few seconds

May import the runtime's core (errors, atomic, tracks) and paho-mqtt; nothing imports this
package but the commands that publish. Imported without paho installed, it still parses
settings and builds payloads; making a client or a publisher then names the `mqtt` extra.
"""
