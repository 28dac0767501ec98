# NATS with JetStream for topcoins. Skip this job to use an existing NATS cluster: set the
# `nats_url` variable of topcoins.nomad.hcl to its URLs instead (see README.md).
job "topcoins-nats" {
  type = "service"

  group "nats" {
    count = 1

    network {
      port "client" { static = 4222 }
      port "monitor" { to = 8222 }
    }

    volume "nats-data" {
      type      = "host"
      source    = "nats-data"
      read_only = false
    }

    restart {
      attempts = 10
      interval = "30m"
      delay    = "10s"
      mode     = "delay"
    }

    update {
      max_parallel     = 1
      min_healthy_time = "10s"
      healthy_deadline = "3m"
      auto_revert      = true
    }

    service {
      name     = "topcoins-nats"
      port     = "client"
      provider = "nomad"

      check {
        type     = "http"
        port     = "monitor"
        path     = "/healthz"
        interval = "10s"
        timeout  = "2s"
      }
    }

    task "nats" {
      driver = "docker"

      config {
        image = "nats:2.12-alpine"
        ports = ["client", "monitor"]
        args  = ["-js", "-sd", "/data", "-m", "8222"]
      }

      volume_mount {
        volume      = "nats-data"
        destination = "/data"
      }

      resources {
        cpu    = 500
        memory = 512
      }
    }
  }
}
