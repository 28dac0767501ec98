# Alertmanager for topcoins' operational alerts, registered as the Nomad service
# "topcoins-alertmanager" that nomad/prometheus.yml sends alerts to. Its routing is
# deploy/alertmanager/alertmanager.yml, read when the job is submitted (run `nomad job run` from
# the repository root); the receiver's URL comes from the Nomad variable
# nomad/jobs/topcoins-alertmanager (`webhook_url`, see README.md), never this file.
job "topcoins-alertmanager" {
  type = "service"

  group "alertmanager" {
    count = 1

    network {
      port "http" { to = 9093 }
    }

    # Silences and notification state survive a restart on the same client.
    ephemeral_disk {
      sticky  = true
      migrate = true
    }

    restart {
      attempts = 10
      interval = "10m"
      delay    = "5s"
      mode     = "delay"
    }

    update {
      max_parallel     = 1
      min_healthy_time = "10s"
      healthy_deadline = "2m"
      auto_revert      = true
    }

    service {
      name     = "topcoins-alertmanager"
      port     = "http"
      provider = "nomad"

      check {
        type     = "http"
        path     = "/-/healthy"
        interval = "10s"
        timeout  = "2s"
      }
    }

    task "alertmanager" {
      driver = "docker"

      config {
        image = "prom/alertmanager:v0.27.0"
        ports = ["http"]
        # One instance: no cluster gossip.
        args = [
          "--config.file=/local/alertmanager.yml",
          "--storage.path=/alloc/data",
          "--cluster.listen-address=",
        ]
      }

      # Alertmanager does not expand variables in its configuration: the default receiver URL
      # of the compose file is replaced by a template reading the Nomad variable.
      template {
        destination = "local/alertmanager.yml"
        data = replace(
          file("deploy/alertmanager/alertmanager.yml"),
          "http://host.docker.internal:5001/",
          "{{ with nomadVar \"nomad/jobs/topcoins-alertmanager\" }}{{ .webhook_url }}{{ end }}"
        )
      }

      resources {
        cpu    = 100
        memory = 64
      }
    }
  }
}
