# placeholder: service fixtures (Mosquitto, RTSP server) are written here
